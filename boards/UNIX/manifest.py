# Unix simulator image: the firmware plus this board's configuration.
include("../../firmware/manifest.py")
module("board.py")
