"""lit_offmeta.nn"""
