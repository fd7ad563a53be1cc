#!/usr/bin/env node
// Compile Solidity with npm `solc` (solcjs, WebAssembly: no compiler downloads).
//
// stdin:  {"input": <solc standard-JSON input>, "searchPaths": [dir, ...]}
// stdout: {"version": <solc version>, "output": <solc standard-JSON output>,
//          "resolved": {<imported source unit name>: <absolute file path>}}
//
// Imports are looked up in each search path in order (typically the repo root,
// then node_modules, so "@openzeppelin/contracts/..." resolves to the npm package).
// A lookup never leaves its search path.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const solc = require('solc');

function readStdin() {
  return fs.readFileSync(0, 'utf8');
}

function makeImportResolver(searchPaths, resolved) {
  return (importPath) => {
    for (const base of searchPaths) {
      const candidate = path.resolve(base, importPath);
      const rel = path.relative(base, candidate);
      if (rel.startsWith('..') || path.isAbsolute(rel)) continue;
      if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) {
        resolved[importPath] = candidate;
        return { contents: fs.readFileSync(candidate, 'utf8') };
      }
    }
    return { error: `File not found: ${importPath} (searched ${searchPaths.join(', ')})` };
  };
}

function main() {
  const request = JSON.parse(readStdin());
  const searchPaths = (request.searchPaths || []).map((p) => path.resolve(p));
  const resolved = {};
  const output = JSON.parse(
    solc.compile(JSON.stringify(request.input), { import: makeImportResolver(searchPaths, resolved) }),
  );
  process.stdout.write(JSON.stringify({ version: solc.version(), output, resolved }));
}

main();
