// Conversions between the engine's structs (engine_options.h, executor.h) and their worker.proto mirrors.
#pragma once

#include "engine/runtime/engine_options.h"
#include "engine/runtime/executor.h"
#include "zeroinfer/v1/worker.pb.h"

namespace zi::worker {

namespace pb = ::zeroinfer::v1::worker;

void to_proto(const EngineOptions& in, pb::EngineOptions* out);
EngineOptions from_proto(const pb::EngineOptions& in);

void to_proto(const ModelSummary& in, pb::ModelSummary* out);
ModelSummary from_proto(const pb::ModelSummary& in);

// A StepInput on the wire is one rank's micro-batch: SeqStep::rank and SeqRelease::rank are not carried (the
// worker pool sends each rank its own part, and the worker's executor runs it as its rank 0).
void to_proto(const StepInput& in, pb::StepInput* out);
StepInput from_proto(const pb::StepInput& in);

void to_proto(const StepOutput& in, pb::StepReply* out);
StepOutput from_proto(const pb::StepReply& in);

// absl::Status ⇄ worker.proto Error (code + message).
void to_proto(const Status& in, pb::Error* out);
Status from_proto(const pb::Error& in);

}  // namespace zi::worker
