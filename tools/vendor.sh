#!/bin/sh
# Copy the pinned front-end packages from node_modules into web/static/vendor,
# so the app serves them itself (no CDN at run time).
set -e
dst=web/static/vendor
rm -rf "$dst" && mkdir -p "$dst"
cp node_modules/bpmn-js/dist/bpmn-navigated-viewer.production.min.js "$dst/"
cp node_modules/bpmn-js/dist/assets/bpmn-js.css "$dst/"
cp node_modules/bpmn-js/dist/assets/diagram-js.css "$dst/"
cp -r node_modules/bpmn-js/dist/assets/bpmn-font "$dst/"
cp node_modules/@picocss/pico/css/pico.min.css "$dst/"
cp node_modules/chart.js/dist/chart.umd.js "$dst/" 2>/dev/null || cp node_modules/chart.js/dist/chart.umd.min.js "$dst/"
