/* The in-browser BPMN modeler of /procesos/<id>/editar.
 *
 * Source of web/static/vendor/modeler.js, bundled by tools/vendor.sh with
 * esbuild (no CDN at run time): bpmn-js Modeler, the properties panel with the
 * Camunda 7 provider (forms, candidate groups, external topics, conditions)
 * and camunda-bpmn-moddle, so what the analyst saves keeps every camunda:
 * extension, exactly as Camunda Modeler would.
 *
 * The page hands over its data in <script type="application/json"> (the
 * diagram XML, the URLs and the CSRF token): no inline script, CSP-friendly.
 */
import BpmnModeler from 'bpmn-js/lib/Modeler';
import {
  BpmnPropertiesPanelModule,
  BpmnPropertiesProviderModule,
  CamundaPlatformPropertiesProviderModule
} from 'bpmn-js-properties-panel';
import CamundaPlatformBehaviorsModule from 'camunda-bpmn-js-behaviors/lib/camunda-platform';
import camundaModdle from 'camunda-bpmn-moddle/resources/camunda.json';

function horaLocal(iso) {
  const d = iso ? new Date(iso) : new Date();
  return d.toLocaleTimeString('es-MX', { hour: '2-digit', minute: '2-digit' });
}

class Editor {
  constructor(root, data) {
    this.root = root;
    this.data = data;
    this.dirty = false;
    this.marked = [];
    this.status = root.querySelector('[data-estado]');
    this.results = root.querySelector('[data-resultados]');
    this.modeler = new BpmnModeler({
      container: root.querySelector('[data-lienzo]'),
      propertiesPanel: {
        parent: root.querySelector('[data-propiedades]'),
        layout: { groups: { general: { open: true } } }
      },
      additionalModules: [
        BpmnPropertiesPanelModule,
        BpmnPropertiesProviderModule,
        CamundaPlatformPropertiesProviderModule,
        CamundaPlatformBehaviorsModule
      ],
      moddleExtensions: { camunda: camundaModdle }
    });
  }

  async open() {
    try {
      const { warnings } = await this.modeler.importXML(this.data.xml);
      this.modeler.get('canvas').zoom('fit-viewport', 'auto');
      if (warnings.length) {
        this.say(`El diagrama se abrió con ${warnings.length} advertencia(s) del modelador.`, 'error');
      }
    } catch (err) {
      this.say(`No se pudo abrir el diagrama: ${err.message}`, 'error');
      this.root.dataset.listo = 'error';
      return;
    }
    this.modeler.on('commandStack.changed', () => this.setDirty(true));
    this.root.querySelector('[data-accion="guardar"]').addEventListener('click', () => this.save());
    this.root.querySelector('[data-accion="validar"]').addEventListener('click', () => this.validate());
    this.root.querySelector('[data-accion="desplegar"]').addEventListener('click', () => this.deploy());
    window.addEventListener('beforeunload', (ev) => {
      if (this.dirty) { ev.preventDefault(); ev.returnValue = ''; }
    });
    window.modelador = this.modeler; // for the browser tests and the curious
    this.root.dataset.listo = 'si';
  }

  setDirty(dirty) {
    this.dirty = dirty;
    this.root.dataset.cambios = dirty ? 'si' : 'no';
    if (dirty) this.say('Hay cambios sin guardar.', 'info');
  }

  say(text, kind) {
    this.status.textContent = text;
    this.status.className = `aviso aviso-${kind || 'info'}`;
  }

  async xml() {
    const { xml } = await this.modeler.saveXML({ format: true });
    return xml;
  }

  async post(url, body) {
    const response = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRFToken': this.data.csrf, Accept: 'application/json' },
      body: JSON.stringify(body)
    });
    let payload = {};
    try { payload = await response.json(); } catch (e) { payload = {}; }
    if (!response.ok) {
      const detail = payload.fields ? Object.values(payload.fields).join(' ') : '';
      throw new Error([payload.error || `Error ${response.status}`, detail].filter(Boolean).join(': '));
    }
    return payload;
  }

  async save() {
    try {
      const saved = await this.post(this.data.urls.guardar, { xml: await this.xml() });
      this.setDirty(false);
      this.say(`Borrador guardado a las ${horaLocal(saved.saved_at)} por ${saved.saved_by}.`, 'exito');
      return true;
    } catch (err) {
      this.say(`No se guardó el borrador: ${err.message}`, 'error');
      return false;
    }
  }

  async validate() {
    if (!(await this.save())) return false;
    let result;
    try {
      result = await this.post(this.data.urls.validar, { xml: await this.xml() });
    } catch (err) {
      this.say(`No se pudo validar: ${err.message}`, 'error');
      return false;
    }
    this.show(result.problems);
    if (result.problems.length) {
      this.say(`El borrador tiene ${result.problems.length} problema(s): corríjalos antes de desplegar.`, 'error');
      return false;
    }
    this.say('El borrador es válido: puede desplegarlo como una nueva versión.', 'exito');
    return true;
  }

  show(problems) {
    const canvas = this.modeler.get('canvas');
    const registry = this.modeler.get('elementRegistry');
    this.marked.forEach((id) => registry.get(id) && canvas.removeMarker(id, 'con-problema'));
    this.marked = [];
    this.results.replaceChildren();
    problems.forEach((p) => {
      const item = document.createElement('li');
      const element = registry.get(p.element_id);
      const text = document.createElement(element ? 'a' : 'span');
      text.textContent = p.text;
      if (element) {
        text.href = '#';
        text.addEventListener('click', (ev) => {
          ev.preventDefault();
          this.modeler.get('selection').select(element);
          canvas.scrollToElement(element);
        });
        if (!this.marked.includes(p.element_id)) {
          canvas.addMarker(p.element_id, 'con-problema');
          this.marked.push(p.element_id);
        }
      }
      item.appendChild(text);
      this.results.appendChild(item);
    });
  }

  async deploy() {
    if (!(await this.validate())) return;
    const form = this.root.querySelector('form[data-desplegar]');
    this.dirty = false;
    form.submit();
  }
}

function start() {
  const root = document.querySelector('[data-modelador]');
  if (!root) return;
  const data = JSON.parse(document.getElementById(root.dataset.modelador).textContent);
  new Editor(root, data).open();
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', start);
} else {
  start();
}
