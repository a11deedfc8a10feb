/* The Director's chart: orders received and services published per quarter
 * (bars) and the section 9 indicator in % (line, right axis), with Chart.js.
 * The figures come from a <script type="application/json"> on the page. */
(function () {
  'use strict';
  var lienzo = document.getElementById('grafica-indicador');
  if (!lienzo || !window.Chart) { return; }
  var d = JSON.parse(document.getElementById('datos-grafica').textContent);
  var grafica = new window.Chart(lienzo, {
    data: {
      labels: d.etiquetas,
      datasets: [
        { type: 'bar', label: 'Órdenes recibidas', data: d.recibidas, backgroundColor: '#90caf9', yAxisID: 'y' },
        { type: 'bar', label: 'Servicios publicados', data: d.publicadas, backgroundColor: '#2e7d32', yAxisID: 'y' },
        { type: 'line', label: 'Indicador (%)', data: d.indicador, borderColor: '#e08e0b', backgroundColor: '#e08e0b',
          yAxisID: 'pct', spanGaps: false, tension: 0, pointRadius: 5, clip: false }
      ]
    },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      locale: 'es-MX',
      interaction: { mode: 'index', intersect: false },
      scales: {
        y: { beginAtZero: true, grace: '15%', title: { display: true, text: 'Órdenes' }, ticks: { precision: 0 } },
        pct: { position: 'right', min: 0, max: 100, title: { display: true, text: 'Indicador (%)' },
               grid: { drawOnChartArea: false }, ticks: { callback: function (v) { return v + ' %'; } } }
      },
      layout: { padding: { top: 12 } },
      plugins: { legend: { position: 'bottom' } }
    }
  });
  lienzo.dataset.listo = 'si';
  window.graficaIndicador = grafica;
}());
