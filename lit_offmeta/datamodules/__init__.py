"""lit_offmeta.datamodules"""
