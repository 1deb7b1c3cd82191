# Manifest for the unix-port test VM (`make micropython`): what a board image
# has that matters to our code (asyncio), plus the product manifest (every
# component in manifests/: the client, the modem driver, OTA).
include("$(MPY_DIR)/extmod/asyncio")
include("../manifest.py")
