# What gets frozen into the firmware image: asyncio from MicroPython's tree and our
# packages (paths are relative to this file). Tests and host tools are not frozen.
include("$(MPY_DIR)/extmod/asyncio")
package("dlms")
package("cosem")
package("metering")
package("adapters")
module("main.py")
