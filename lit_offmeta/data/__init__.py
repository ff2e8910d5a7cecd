"""lit_offmeta.data"""
