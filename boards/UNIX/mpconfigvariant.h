// The simulated meter board: MicroPython's unix port at the "extra features" level,
// like the standard variant, with our firmware frozen in (see firmware/manifest.py).
#define MICROPY_CONFIG_ROM_LEVEL (MICROPY_CONFIG_ROM_LEVEL_EXTRA_FEATURES)
#include "variants/mpconfigvariant_common.h"


// Larger cache for global/attribute lookups (static RAM, not heap): map lookups were
// the first item in a callgrind profile of a GET. The cache is indexed by the key alone
// and a qstr key only reaches every other slot, so with the firmware's few thousand
// names 512 slots kept evicting each other; 4096 took 4% off a GET (16384: no more).
#define MICROPY_OPT_MAP_LOOKUP_CACHE_SIZE (4096)
