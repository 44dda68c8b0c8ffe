// Recoverable errors are values: absl::Status / absl::StatusOr<T>, whose message names the file, field or limit.
// Broken invariants (bugs, not bad input) crash loudly with ZI_CHECK.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace zi {

using absl::Status;
using absl::StatusOr;

}  // namespace zi

#define ZI_CONCAT_INNER_(a, b) a##b
#define ZI_CONCAT_(a, b) ZI_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define ZI_RETURN_IF_ERROR(expr)                 \
  do {                                           \
    ::absl::Status zi_status_ = (expr);          \
    if (!zi_status_.ok()) return zi_status_;     \
  } while (0)

// `ZI_ASSIGN_OR_RETURN(auto x, MakeX());` binds the value or returns the error.
#define ZI_ASSIGN_OR_RETURN(lhs, expr) ZI_ASSIGN_OR_RETURN_IMPL_(ZI_CONCAT_(zi_sor_, __LINE__), lhs, expr)
#define ZI_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()

// Invariant check: a failure is a bug in zeroinfer, never a user's bad input.
#define ZI_CHECK(cond)                                                                     \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      std::fprintf(stderr, "zeroinfer: internal check failed at %s:%d: %s\n", __FILE__,    \
                   __LINE__, #cond);                                                       \
      std::abort();                                                                        \
    }                                                                                      \
  } while (0)
