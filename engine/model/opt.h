// OPT (OPTForCausalLM, facebook/opt-*): learned absolute positions with OPT's offset of 2, LayerNorm before
// (OPT-125M, 1.3B ... 175B) or after (OPT-350M) each block, ReLU MLP (fc1/fc2), biases unless enable_bias is false,
// project_in/project_out when word_embed_proj_dim differs from hidden_size, tied head by default.
#pragma once

#include <memory>
#include <vector>

#include "engine/model/registry.h"

namespace zi::opt {

Status parse_config(const ConfigReader& config, ModelConfig& cfg);
void global_weights(const ModelConfig& cfg, GlobalWeights& w, std::vector<WeightSpec>& specs);
void layer_weights(const ModelConfig& cfg, int layer, LayerWeights& w, std::vector<WeightSpec>& specs);
StatusOr<std::unique_ptr<CausalLM>> create(const ModelConfig& cfg, Backend& backend,
                                           std::unique_ptr<ParameterSource> params);

// Row indices into model.decoder.embed_positions for the step's rows: position + 2, positions counted from the
// attention mask as transformers does (for unpadded sequences: past_len + i). An error when a position is past the
// learned table (max_position_embeddings).
// OUT_OF_RANGE when a new row's position is past the learned positions.
Status check_positions(const std::vector<SeqSlice>& seqs, int64_t max_position_embeddings);
StatusOr<std::vector<int32_t>> position_rows(const std::vector<SeqSlice>& seqs, int64_t max_position_embeddings);

}  // namespace zi::opt
