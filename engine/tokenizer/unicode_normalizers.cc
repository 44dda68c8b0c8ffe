// Unicode normalizers through ICU: NFC / NFD / NFKC / NFKD (Qwen2 uses NFC) and Lowercase (each code
// point to its full lowercase mapping, as Rust's char::to_lowercase that `tokenizers` applies).
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "engine/tokenizer/components.h"
#include "engine/tokenizer/utf8.h"

namespace zi::tok {
namespace {

StatusOr<std::u16string> to_utf16(const std::string& s) {
  UErrorCode err = U_ZERO_ERROR;
  int32_t len = 0;
  u_strFromUTF8(nullptr, 0, &len, s.data(), static_cast<int32_t>(s.size()), &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) {
    return absl::InvalidArgumentError(std::string("unicode normalizer: ") + u_errorName(err));
  }
  std::u16string out(static_cast<size_t>(len), u'\0');
  err = U_ZERO_ERROR;
  u_strFromUTF8(out.data(), len, nullptr, s.data(), static_cast<int32_t>(s.size()), &err);
  if (U_FAILURE(err)) return absl::InvalidArgumentError(std::string("unicode normalizer: ") + u_errorName(err));
  return out;
}

StatusOr<std::string> to_utf8(const std::u16string& s) {
  UErrorCode err = U_ZERO_ERROR;
  int32_t len = 0;
  u_strToUTF8(nullptr, 0, &len, s.data(), static_cast<int32_t>(s.size()), &err);
  if (err != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(err)) {
    return absl::InvalidArgumentError(std::string("unicode normalizer: ") + u_errorName(err));
  }
  std::string out(static_cast<size_t>(len), '\0');
  err = U_ZERO_ERROR;
  u_strToUTF8(out.data(), len, nullptr, s.data(), static_cast<int32_t>(s.size()), &err);
  if (U_FAILURE(err)) return absl::InvalidArgumentError(std::string("unicode normalizer: ") + u_errorName(err));
  return out;
}

class IcuNormalizer : public Normalizer {
 public:
  explicit IcuNormalizer(const UNormalizer2* n) : n_(n) {}
  Status normalize(std::string& s) const override {
    bool ascii = true;
    for (unsigned char c : s) ascii &= c < 0x80;
    if (ascii) return absl::OkStatus();  // every normalization form leaves ASCII alone
    ZI_ASSIGN_OR_RETURN(std::u16string in, to_utf16(s));
    UErrorCode err = U_ZERO_ERROR;
    if (unorm2_isNormalized(n_, in.data(), static_cast<int32_t>(in.size()), &err) && U_SUCCESS(err)) {
      return absl::OkStatus();
    }
    err = U_ZERO_ERROR;
    int32_t len = unorm2_normalize(n_, in.data(), static_cast<int32_t>(in.size()), nullptr, 0, &err);
    std::u16string out(static_cast<size_t>(len), u'\0');
    err = U_ZERO_ERROR;
    unorm2_normalize(n_, in.data(), static_cast<int32_t>(in.size()), out.data(), len, &err);
    if (U_FAILURE(err)) return absl::InvalidArgumentError(std::string("unicode normalizer: ") + u_errorName(err));
    ZI_ASSIGN_OR_RETURN(s, to_utf8(out));
    return absl::OkStatus();
  }

 private:
  const UNormalizer2* n_;  // owned by ICU
};

class LowercaseNormalizer : public Normalizer {
 public:
  Status normalize(std::string& s) const override {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
      unsigned char b = static_cast<unsigned char>(s[i]);
      if (b < 0x80) {
        out.push_back(static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b));
        ++i;
        continue;
      }
      const size_t start = i;
      char32_t cp = next_code_point(s, i);
      // Full mapping of the single code point (no context: Σ → σ as Rust does).
      UChar src[2];
      int32_t n = 0;
      UBool err_flag = false;
      U16_APPEND(src, n, 2, static_cast<UChar32>(cp), err_flag);
      UChar dst[8];
      UErrorCode err = U_ZERO_ERROR;
      int32_t len = u_strToLower(dst, 8, src, n, "", &err);
      if (U_FAILURE(err) || err_flag) {
        out.append(s, start, i - start);
        continue;
      }
      for (int32_t k = 0; k < len;) {
        UChar32 c;
        U16_NEXT(dst, k, len, c);
        append_utf8(out, static_cast<char32_t>(c));
      }
    }
    s = std::move(out);
    return absl::OkStatus();
  }
};

}  // namespace

StatusOr<std::unique_ptr<Normalizer>> make_unicode_normalizer(const std::string& type) {
  UErrorCode err = U_ZERO_ERROR;
  const UNormalizer2* n = nullptr;
  if (type == "NFC") n = unorm2_getNFCInstance(&err);
  else if (type == "NFD") n = unorm2_getNFDInstance(&err);
  else if (type == "NFKC") n = unorm2_getNFKCInstance(&err);
  else if (type == "NFKD") n = unorm2_getNFKDInstance(&err);
  else if (type == "Lowercase") return std::unique_ptr<Normalizer>(new LowercaseNormalizer());
  else return std::unique_ptr<Normalizer>();
  if (U_FAILURE(err) || n == nullptr) {
    return absl::InternalError("normalizer " + type + ": ICU data unavailable (" + u_errorName(err) + ")");
  }
  return std::unique_ptr<Normalizer>(new IcuNormalizer(n));
}

}  // namespace zi::tok
