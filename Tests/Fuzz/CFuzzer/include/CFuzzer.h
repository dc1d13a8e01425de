// libFuzzer's driver, called from the Swift entry point (scripts/fuzz builds with -sanitize=fuzzer, which
// links libFuzzer). SwiftPM names an executable's entry point <module>_main, so libFuzzer's own main is
// not used; FuzzDriver_main hands argc/argv to this.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
