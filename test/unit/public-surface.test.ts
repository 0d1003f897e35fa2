// The package root exports exactly what docs/public-api.md lists: its run-time export
// names (the values) and its exported type names, each against the document, and every
// type a public declaration names is public itself (exported from the root or reachable
// through one of its namespaces), so no signature leads to a type a user cannot import.
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

import * as api from '../../src/index.js';
import { root } from '../helpers.js';

const VALUE_KINDS = new Set(['function', 'class', 'const', 'namespace']);
const CLASS_KIND = 'class';

/** `- \`name\` (kind): text` lines of docs/public-api.md. */
function documented(): { name: string; kind: string }[] {
  const text = readFileSync(join(root, 'docs', 'public-api.md'), 'utf8');
  const entries = [...text.matchAll(/^- `([A-Za-z_$][\w$]*)` \((function|class|const|namespace|type)\): \S/gm)].map((m) => ({
    name: m[1],
    kind: m[2],
  }));
  const bullets = text.split('\n').filter((l) => l.startsWith('- ')).length;
  expect(entries.length, 'every bullet of docs/public-api.md has the form "- `name` (kind): text"').toBe(bullets);
  return entries;
}

const entry = join(root, 'src', 'index.ts');
const config = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.build.json'), {}, {
  ...ts.sys,
  onUnRecoverableConfigFileDiagnostic: () => {},
})!;
const program = ts.createProgram({ rootNames: [entry], options: { ...config.options, noEmit: true } });
const checker = program.getTypeChecker();
const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(entry)!)!;
const rootExports = checker.getExportsOfModule(moduleSymbol);
const resolved = (s: ts.Symbol) => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s);

describe('the public surface (src/index.ts) equals docs/public-api.md', () => {
  const doc = documented();

  it('lists each export once', () => {
    const names = doc.map((d) => d.name);
    expect(names.filter((n, i) => names.indexOf(n) !== i)).toEqual([]);
  });

  it('run-time exports', () => {
    const values = doc.filter((d) => VALUE_KINDS.has(d.kind)).map((d) => d.name);
    expect(Object.keys(api).sort()).toEqual([...values].sort());
  });

  it('exported type names', () => {
    const typeOnly = rootExports.filter((s) => !(resolved(s).flags & ts.SymbolFlags.Value)).map((s) => s.name);
    const types = doc.filter((d) => d.kind === 'type').map((d) => d.name);
    expect([...typeOnly].sort()).toEqual([...types].sort());
    // Classes are types too: the document's classes are exactly the exported classes.
    const classes = rootExports.filter((s) => resolved(s).flags & ts.SymbolFlags.Class).map((s) => s.name);
    expect(classes.sort()).toEqual(doc.filter((d) => d.kind === CLASS_KIND).map((d) => d.name).sort());
  });

  it('every type a public declaration names is public', () => {
    const reachable = new Set<ts.Symbol>();
    for (const s of rootExports) {
      const t = resolved(s);
      reachable.add(t);
      if (t.flags & ts.SymbolFlags.ValueModule) for (const m of checker.getExportsOfModule(t)) reachable.add(resolved(m));
      // `export type A = B` gives B a public name (GgufTensorTypeName = the binding's GgufTensorType).
      const decl = t.declarations?.[0];
      if (decl && ts.isTypeAliasDeclaration(decl) && ts.isTypeReferenceNode(decl.type)) {
        const renamed = checker.getSymbolAtLocation(decl.type.typeName);
        if (renamed) reachable.add(resolved(renamed));
      }
    }
    const src = join(root, 'src');
    const leaks = new Set<string>();
    const visit = (node: ts.Node, owner: string) => {
      if (ts.isTypeReferenceNode(node) || ts.isExpressionWithTypeArguments(node)) {
        const nameNode = ts.isTypeReferenceNode(node)
          ? ts.isQualifiedName(node.typeName)
            ? node.typeName.right
            : node.typeName
          : node.expression;
        const sym = checker.getSymbolAtLocation(nameNode);
        if (sym) {
          const t = resolved(sym);
          const decl = t.declarations?.[0];
          const file = decl?.getSourceFile().fileName;
          if (decl && file && !relative(src, file).startsWith('..') && !ts.isTypeParameterDeclaration(decl) && !reachable.has(t))
            leaks.add(`${owner} names ${t.name} (${relative(root, file)})`);
        }
      }
      ts.forEachChild(node, (c) => visit(c, owner));
    };
    // A function-like declaration's signature (type parameters, parameters, return type),
    // never its body; any other member as a whole.
    const signature = (n: ts.Node): ts.Node[] =>
      ts.isFunctionLike(n) ? [...(n.typeParameters ?? []), ...n.parameters, ...(n.type ? [n.type] : [])] : [n];
    for (const s of rootExports) {
      const t = resolved(s);
      if (t.flags & ts.SymbolFlags.ValueModule) continue;
      for (const decl of t.declarations ?? []) {
        if (ts.isClassDeclaration(decl)) {
          for (const m of decl.members) {
            const mods = ts.getCombinedModifierFlags(m);
            if (mods & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected) || (m.name && ts.isPrivateIdentifier(m.name))) continue;
            for (const part of signature(m)) visit(part, s.name);
          }
        } else if (ts.isVariableDeclaration(decl)) {
          if (decl.type) visit(decl.type, s.name);
        } else if (ts.isFunctionDeclaration(decl)) {
          for (const part of signature(decl)) visit(part, s.name);
        } else {
          visit(decl, s.name);
        }
      }
    }
    expect([...leaks].sort()).toEqual([]);
  });
});
