# What gets frozen into the firmware image: our packages (paths are relative to this file). Tests and host tools are not frozen.
package("dlms")
package("cosem")
package("metering")
package("adapters")
module("main.py")
