import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/**
 * Validates plain objects (parsed from our YAML) against the KubeVirt and CDI API definitions that
 * @kubevirt-ui-ext/kubevirt-api generates from the projects' OpenAPI specs. Each object is written
 * as an object literal with a type annotation and handed to the TypeScript compiler, so unknown
 * fields (excess properties), wrong value types, bad enum values and missing required fields all
 * become diagnostics.
 */

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
/** In memory only; it must sit inside the repository so node_modules resolution finds the package. */
const VIRTUAL_FILE = join(REPO_ROOT, 'test/unit/kubevirt/__manifest-check__.ts');

const PRELUDE = `
import type { V1VirtualMachine, V1VirtualMachineSpec } from '@kubevirt-ui-ext/kubevirt-api/kubevirt';
import type {
  V1beta1DataVolume,
  V1beta1DataVolumeSource,
  V1beta1DataVolumeSourceHTTP,
  V1beta1DataVolumeSpec,
} from '@kubevirt-ui-ext/kubevirt-api/containerized-data-importer';

/** The generated types use TypeScript enums and Date; on the wire these are strings. */
type Wire<T> = T extends string
  ? \`\${T}\`
  : T extends number | boolean | null | undefined
    ? T
    : T extends Date
      ? string
      : T extends Array<infer U>
        ? Array<Wire<U>>
        : T extends object
          ? { [K in keyof T]: Wire<T[K]> }
          : T;

/**
 * CDI added spec.source.http.checksum in v1.65.0 (after the package's API snapshot); this is the
 * one field added on top of the generated definition.
 */
type DataVolumeSourceHTTPWithChecksum = V1beta1DataVolumeSourceHTTP & { checksum?: string };
type DataVolume = Omit<V1beta1DataVolume, 'spec'> & {
  spec: Omit<V1beta1DataVolumeSpec, 'source'> & {
    source?: Omit<V1beta1DataVolumeSource, 'http'> & { http?: DataVolumeSourceHTTPWithChecksum };
  };
};

export type ApiTypes = {
  VirtualMachine: Wire<V1VirtualMachine>;
  VirtualMachineSpec: Wire<V1VirtualMachineSpec>;
  DataVolume: Wire<DataVolume>;
  DataVolumeStrict: Wire<V1beta1DataVolume>;
};
`;

export type ApiTypeName = 'VirtualMachine' | 'VirtualMachineSpec' | 'DataVolume' | 'DataVolumeStrict';

/** Diagnostics per key; an empty list means the object conforms. */
export function checkAgainstApiTypes(objects: Record<string, { type: ApiTypeName; value: unknown }>): Record<string, string[]> {
  const lines = PRELUDE.split('\n');
  const lineOwner = new Map<number, string>();
  for (const [key, { type, value }] of Object.entries(objects)) {
    const start = lines.length;
    const body = `export const ${key}: ApiTypes['${type}'] = ${JSON.stringify(value, null, 2)};`.split('\n');
    lines.push(...body);
    for (let i = start; i < lines.length; i++) lineOwner.set(i, key);
  }
  const source = lines.join('\n');

  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  host.readFile = (fileName) => (fileName === VIRTUAL_FILE ? source : readFile(fileName));
  host.fileExists = ((exists) => (fileName: string) => fileName === VIRTUAL_FILE || exists(fileName))(host.fileExists.bind(host));
  host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) =>
    fileName === VIRTUAL_FILE ? ts.createSourceFile(fileName, source, languageVersion, true) : getSourceFile(fileName, languageVersion, onError, shouldCreate);

  const program = ts.createProgram([VIRTUAL_FILE], options, host);
  const result: Record<string, string[]> = Object.fromEntries(Object.keys(objects).map((key) => [key, []]));
  const sourceFile = program.getSourceFile(VIRTUAL_FILE);
  for (const diagnostic of ts.getPreEmitDiagnostics(program, sourceFile)) {
    const text = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n');
    if (diagnostic.file === undefined || diagnostic.start === undefined) {
      throw new Error(`type check setup failed: ${text}`);
    }
    const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
    const owner = lineOwner.get(line);
    if (owner === undefined) throw new Error(`type check prelude failed at line ${line + 1}: ${text}`);
    result[owner]?.push(`line ${line + 1}: ${text}`);
  }
  return result;
}
