// Rotary embedding frequencies as transformers computes them (ROPE_INIT_FUNCTIONS), on the host, in fp32.
#pragma once

#include <vector>

#include "engine/core/status.h"
#include "engine/model/config.h"

namespace zi {

// inv_freq [head_dim / 2] for `rope` (default, linear, llama3).
std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t head_dim);

// Reads the RoPE settings from either layout: transformers 5 `rope_parameters` {rope_type, rope_theta, factor, ...},
// or transformers 4 top-level `rope_theta` + `rope_scaling` {rope_type|type, factor, ...}. Both present and
// disagreeing is an error naming the key; unsupported rope types are errors listing the supported ones.
Status parse_rope_config(const ConfigReader& config, int64_t max_position_embeddings, RopeConfig* rope);

}  // namespace zi
