"""lit_offmeta.algorithms"""
