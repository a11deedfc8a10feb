#!/usr/bin/env node
// Imports BPMN files with bpmn-moddle + the Camunda 7 extension, the same
// models Camunda Modeler and bpmn-js use, and reports every warning/error.
//
//   node tools/moddle_check.mjs FILE...                  # exit 1 on any warning/error
//   node tools/moddle_check.mjs --roundtrip OUTDIR FILE... # also re-export each file
//
// Prints `ok FILE` for each clean file.
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { createRequire } from 'node:module';
import { BpmnModdle } from 'bpmn-moddle';

const require = createRequire(import.meta.url);
const camundaDescriptor = require('camunda-bpmn-moddle/resources/camunda.json');

function usage(message) {
  if (message) console.error(message);
  console.error('uso: node tools/moddle_check.mjs [--roundtrip OUTDIR] ARCHIVO.bpmn...');
  process.exit(2);
}

function parseArgs(argv) {
  const files = [];
  let outDir = null;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--roundtrip') {
      outDir = argv[++i];
      if (!outDir) usage('--roundtrip requiere un directorio');
    } else if (arg.startsWith('--roundtrip=')) {
      outDir = arg.slice('--roundtrip='.length);
    } else if (arg === '-h' || arg === '--help') {
      usage();
    } else {
      files.push(arg);
    }
  }
  if (!files.length) usage('no se indicó ningún archivo');
  return { files, outDir };
}

function describeWarning(warning) {
  const parts = [warning.message];
  const element = warning.element;
  if (element && element.$type) {
    parts.push(`(elemento ${element.$type}${element.id ? ' #' + element.id : ''})`);
  }
  if (warning.property) parts.push(`propiedad ${warning.property}`);
  return parts.join(' ');
}

async function checkFile(file, outDir) {
  const moddle = new BpmnModdle({ camunda: camundaDescriptor });
  let problems = 0;
  let xml;
  try {
    xml = await readFile(file, 'utf8');
  } catch (err) {
    console.error(`${file}: error: no se pudo leer: ${err.message}`);
    return 1;
  }
  let result;
  try {
    result = await moddle.fromXML(xml, 'bpmn:Definitions');
  } catch (err) {
    console.error(`${file}: error: ${err.message}`);
    for (const warning of err.warnings || []) {
      console.error(`${file}: warning: ${describeWarning(warning)}`);
    }
    return 1;
  }
  for (const warning of result.warnings || []) {
    console.error(`${file}: warning: ${describeWarning(warning)}`);
    problems++;
  }
  if (outDir) {
    try {
      const { xml: out } = await moddle.toXML(result.rootElement, { format: true });
      await mkdir(outDir, { recursive: true });
      await writeFile(join(outDir, basename(file)), out, 'utf8');
    } catch (err) {
      console.error(`${file}: error: no se pudo re-exportar: ${err.message}`);
      problems++;
    }
  }
  if (!problems) console.log(`ok ${file}`);
  return problems;
}

const { files, outDir } = parseArgs(process.argv.slice(2));
let failed = 0;
for (const file of files) {
  if (await checkFile(file, outDir)) failed++;
}
process.exit(failed ? 1 : 0);
