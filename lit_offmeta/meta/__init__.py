"""lit_offmeta.meta"""
