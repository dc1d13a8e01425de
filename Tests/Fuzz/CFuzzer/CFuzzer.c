// Declarations only (include/CFuzzer.h); libFuzzer supplies the definitions.
