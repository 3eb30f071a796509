import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

export interface DeclaredTensor {
  name: string;
  /** 'float32', 'int64', ... or `type-<n>` for anything else. */
  elemType: string;
  /** A number for a fixed dimension, a string for a symbolic one, null when unspecified. */
  shape: (number | string | null)[] | null;
}

export interface OnnxDescription {
  irVersion: number;
  opset: number | null;
  inputs: DeclaredTensor[];
  outputs: DeclaredTensor[];
  /** metadata_props (not exposed by the onnxruntime Node API). */
  metadata: Record<string, string>;
}

const ELEM_TYPES: Record<number, string> = { 1: 'float32', 6: 'int32', 7: 'int64', 9: 'bool', 11: 'float64' };

const num = (v: unknown): number => (typeof v === 'number' ? v : Number(String(v)));

function declared(v: onnxProto.onnx.IValueInfoProto): DeclaredTensor {
  const t = v.type?.tensorType;
  const elem = num(t?.elemType ?? 0);
  return {
    name: v.name ?? '',
    elemType: ELEM_TYPES[elem] ?? `type-${elem}`,
    shape: t?.shape
      ? (t.shape.dim ?? []).map((d) => (d.dimParam ? d.dimParam : d.dimValue !== undefined && d.dimValue !== null ? num(d.dimValue) : null))
      : null,
  };
}

/** Decodes an ONNX file's declared graph inputs/outputs, opset and metadata. Throws on undecodable bytes. */
export function describeOnnx(bytes: Uint8Array): OnnxDescription {
  const model = onnx.ModelProto.decode(bytes);
  if (!model.graph) throw new Error('no graph in ONNX file');
  const initializers = new Set((model.graph.initializer ?? []).map((t) => t.name));
  const defaultOpset = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return {
    irVersion: num(model.irVersion),
    opset: defaultOpset ? num(defaultOpset.version) : null,
    inputs: (model.graph.input ?? []).filter((i) => !initializers.has(i.name ?? '')).map(declared),
    outputs: (model.graph.output ?? []).map(declared),
    metadata: Object.fromEntries((model.metadataProps ?? []).map((p) => [p.key ?? '', p.value ?? ''])),
  };
}
