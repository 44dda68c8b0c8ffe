#include <gtest/gtest.h>

#include "engine/core/log.h"
#include "engine/core/status.h"

namespace zi {
namespace {

StatusOr<int> half(int x) {
  if (x % 2) return absl::InvalidArgumentError(absl::StrCat("x: ", x, " is odd"));
  return x / 2;
}

Status quarter(int x, int* out) {
  ZI_ASSIGN_OR_RETURN(int h, half(x));
  ZI_ASSIGN_OR_RETURN(*out, half(h));
  return absl::OkStatus();
}

TEST(Status, AssignOrReturnPropagatesTheFirstError) {
  int out = 0;
  EXPECT_TRUE(quarter(8, &out).ok());
  EXPECT_EQ(out, 2);
  Status s = quarter(6, &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "x: 3 is odd");
}

TEST(Log, ParsesLevelNames) {
  LogLevel l;
  EXPECT_TRUE(parse_log_level("warning", &l));
  EXPECT_EQ(l, LogLevel::WARNING);
  EXPECT_FALSE(parse_log_level("loud", &l));
}

}  // namespace
}  // namespace zi
