// transformers' model-specific tokenizer classes that rebuild the pipeline of tokenizer.json.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "engine/tokenizer/components.h"

namespace zi::tok {

// tokenizer_config.json's "tokenizer_class" without a "Fast" suffix ("" when absent).
std::string class_base_name(const Json& config);

// Patches `tj` (a parsed tokenizer.json) the way the class named by `config` rebuilds it in transformers 5;
// `defaults` receives the class's default named special tokens (config key, token) for keys the config
// lacks. Returns false (and changes nothing) for classes that use tokenizer.json as it is.
bool apply_tokenizer_class(const Json& config, Json& tj, std::vector<std::pair<std::string, std::string>>* defaults);

}  // namespace zi::tok
