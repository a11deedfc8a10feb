/* Draws two versions of a process (bpmn-js NavigatedViewer) and marks what
 * the diff found: added and changed elements on the new version, removed and
 * changed ones on the old. Data: <script type="application/json"> of the page. */
(function () {
  'use strict';

  function dibuja(lienzo, version, marcas) {
    var visor = new window.BpmnJS({ container: lienzo });
    return visor.importXML(version.xml).then(function () {
      var canvas = visor.get('canvas');
      var registry = visor.get('elementRegistry');
      canvas.zoom('fit-viewport', 'auto');
      Object.keys(marcas).forEach(function (clase) {
        marcas[clase].forEach(function (id) { if (registry.get(id)) { canvas.addMarker(id, clase); } });
      });
    });
  }

  var seccion = document.querySelector('[data-diferencias]');
  if (!seccion) { return; }
  var datos = JSON.parse(document.getElementById(seccion.dataset.diferencias).textContent);
  Promise.all([
    dibuja(seccion.querySelector('[data-version="despues"]'), datos.despues,
           { agregado: datos.agregados, cambiado: datos.cambiados }),
    dibuja(seccion.querySelector('[data-version="antes"]'), datos.antes,
           { quitado: datos.quitados, cambiado: datos.cambiados })
  ]).then(function () { seccion.dataset.listo = 'si'; }, function () {
    seccion.dataset.listo = 'error';
    seccion.insertAdjacentHTML('afterbegin', '<p class="texto-error">No se pudieron dibujar los diagramas.</p>');
  });
}());
