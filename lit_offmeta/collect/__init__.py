"""lit_offmeta.collect"""
