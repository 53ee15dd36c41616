"""The npm libraries the hub serves, and which of their files go into the wheel.

Pinned in package-lock.json; setup.py copies these files from node_modules/<package>/ into
gpufleet/hub/ui/vendor/<package>/ when the sdist or wheel is built, so a pip-installed hub has its
charts and its offline /docs. A plain-data module: setup.py loads it by path, without the package.
"""

VENDOR_DIR = "vendor"  # beside this file, inside the installed package

FILES: dict[str, tuple[str, ...]] = {
    "uplot": ("dist/uPlot.iife.min.js", "dist/uPlot.min.css", "LICENSE"),
    "swagger-ui-dist": ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "LICENSE", "NOTICE"),
}
