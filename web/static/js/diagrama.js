/* Draws each [data-diagrama] section with bpmn-js (NavigatedViewer) and marks
 * completed elements, active ones, the current task and visit counts.
 * The data comes from a <script type="application/json"> (web/diagramas.py). */
(function () {
  'use strict';

  function marca(canvas, registry, ids, clase) {
    (ids || []).forEach(function (id) {
      if (registry.get(id)) { canvas.addMarker(id, clase); }
    });
  }

  /* On a narrow screen a whole wide diagram becomes unreadable: show the
   * current (or first active) element at a legible scale instead. */
  function enfoca(canvas, registry, datos) {
    var caja = canvas.viewbox();
    if (caja.scale >= 0.35) { return; }
    var ids = (datos.current ? [datos.current] : []).concat(datos.active || []);
    var el = ids.map(function (id) { return registry.get(id); }).filter(function (e) { return e && !e.waypoints; })[0];
    if (!el) { return; }
    var escala = 0.6, ancho = caja.outer.width / escala, alto = caja.outer.height / escala;
    canvas.viewbox({ x: el.x + el.width / 2 - ancho / 2, y: el.y + el.height / 2 - alto / 2, width: ancho, height: alto });
  }

  function dibuja(seccion) {
    var datos = JSON.parse(document.getElementById(seccion.dataset.diagrama).textContent);
    var lienzo = seccion.querySelector('.lienzo');
    var visor = new window.BpmnJS({ container: lienzo });
    return visor.importXML(datos.xml).then(function () {
      var canvas = visor.get('canvas');
      var registry = visor.get('elementRegistry');
      var overlays = visor.get('overlays');
      canvas.zoom('fit-viewport', 'auto');
      enfoca(canvas, registry, datos);
      marca(canvas, registry, datos.completed, 'completado');
      marca(canvas, registry, datos.active, 'activo');
      if (datos.current) { marca(canvas, registry, [datos.current], 'actual'); }
      Object.keys(datos.visits || {}).forEach(function (id) {
        var el = registry.get(id);
        if (!el || el.waypoints) { return; }
        var badge = document.createElement('span');
        badge.className = 'visitas-badge';
        badge.textContent = String(datos.visits[id]);
        badge.title = 'Ejecutado ' + datos.visits[id] + ' vez/veces';
        overlays.add(id, 'visitas', { position: { top: -8, right: 8 }, html: badge });
      });
      // A call activity leads to the diagram of the process it calls, if shown.
      registry.filter(function (el) { return el.type === 'bpmn:CallActivity'; }).forEach(function (el) {
        if (document.getElementById('diagrama-' + el.businessObject.calledElement)) {
          canvas.addMarker(el.id, 'enlace-llamada');
        }
      });
      visor.get('eventBus').on('element.click', function (ev) {
        var bo = ev.element.businessObject;
        if (ev.element.type !== 'bpmn:CallActivity' || !bo.calledElement) { return; }
        var destino = document.getElementById('diagrama-' + bo.calledElement);
        if (destino) { destino.scrollIntoView({ behavior: 'smooth' }); history.replaceState(null, '', '#' + destino.id); }
      });
      seccion.dataset.listo = 'si';
    }).catch(function () {
      seccion.classList.add('fallo');
      lienzo.textContent = 'No se pudo dibujar el diagrama.';
      seccion.dataset.listo = 'error';
    });
  }

  document.querySelectorAll('[data-diagrama]').forEach(dibuja);
}());
