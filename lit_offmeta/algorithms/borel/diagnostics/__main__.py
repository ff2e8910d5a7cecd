from lit_offmeta.algorithms.borel.diagnostics.cli import main

main()
