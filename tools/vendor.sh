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
# The in-browser modeler of /procesos/<id>/editar: bpmn-js Modeler, the
# properties panel with the Camunda 7 provider and camunda-bpmn-moddle, bundled
# from web/static/js/modeler-entry.js by the pinned esbuild (no CDN at run time).
node_modules/.bin/esbuild web/static/js/modeler-entry.js --bundle --minify --format=iife --target=es2019 \
    --legal-comments=external --log-level=warning --outfile="$dst/modeler.js"
cp node_modules/@bpmn-io/properties-panel/dist/assets/properties-panel.css "$dst/"
