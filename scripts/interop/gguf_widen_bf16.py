"""Copies a GGUF with its BF16 tensors widened to F32, every other tensor and all metadata unchanged.
For measuring with llama.cpp a GGUF whose 1-D norm weights were written as BF16, which llama.cpp's CPU
backend refuses ("binary_op: unsupported types"). Needs gguf and numpy (pip).

  gguf_widen_bf16.py IN.gguf OUT.gguf
"""
import sys, numpy as np, gguf
from gguf.quants import dequantize
r = gguf.GGUFReader(sys.argv[1])
arch = r.fields["general.architecture"].contents()
w = gguf.GGUFWriter(sys.argv[2], arch)
for f in r.fields.values():
    if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
        continue
    vt = f.types[0]; st = f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None
    w.add_key_value(f.name, f.contents(), vt, sub_type=st)
data = []
for t in r.tensors:
    if t.tensor_type == gguf.GGMLQuantizationType.BF16:
        shape = [int(x) for x in reversed(t.shape.tolist())]
        a = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        w.add_tensor_info(t.name, a.shape, a.dtype, a.nbytes, gguf.GGMLQuantizationType.F32)
        data.append(a)
    else:
        w.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
        data.append(t.data)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_ti_data_to_file()
for a in data:
    w.write_tensor_data(a, tensor_endianess=r.endianess)
w.close()
