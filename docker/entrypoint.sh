#!/bin/sh
# Runs the bundled binary with its private libraries first on the search path.
export LD_LIBRARY_PATH=/opt/zeroinfer/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
exec /opt/zeroinfer/bin/zeroinfer "$@"
