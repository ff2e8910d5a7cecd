"""lit_offmeta.callbacks"""
