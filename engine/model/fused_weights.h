// Fused projections of resident layers: the linear weights that read the same input (q/k/v after the attention norm,
// gate/up after the MLP norm) concatenated along their output rows, so a forward runs one GEMM (GEMV at decode)
// instead of three (two) and feeds the result to a fused op (Backend::qkv_rope_kv_write, Backend::gate_up_silu).
// Only for weights that stay put: a streamed layer's LayerWeights are views into a ring slot rebound every step, so
// its projections stay separate.
#pragma once

#include "engine/backend/backend.h"
#include "engine/core/status.h"
#include "engine/model/weights.h"

namespace zi {

// `parts` (all defined) as one LinearWeight with their rows in order: dense weights of one dtype, or quantized ones
// of one bits / group size (codes, scales and minimums concatenate row by row, since quantization groups run along
// a row); biases concatenate when every part has one. An empty LinearWeight (defined() false) when the parts cannot
// share a weight (mixed formats, dtypes, input widths or bias presence); an error only when memory runs out.
StatusOr<LinearWeight> concat_linear_rows(Backend& backend, const std::vector<const LinearWeight*>& parts);

// Fills w.qkv_fused from q_proj, k_proj, v_proj and w.gate_up_fused from gate_proj, up_proj (the Llama family's
// layouts, see LayerWeights) and empties the separate fields, freeing their memory. A group that is absent or
// cannot be fused is left as it is.
Status fuse_layer_projections(Backend& backend, LayerWeights& w);

}  // namespace zi
