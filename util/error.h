// Errors: every failure a user can cause is a judgeq::Error whose message reads
// "<what> (got X, expected Y); <what to do>". Each main catches it once and exits non-zero.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace judgeq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... R>
void append(std::ostringstream& os, const T& v, const R&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

// fail("cannot open ", path, "; check the path") -> throws Error with the concatenated message.
template <typename... A>
[[noreturn]] void fail(const A&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  throw Error(os.str());
}

// check(cond, parts...) throws Error(parts...) when cond is false.
template <typename... A>
void check(bool cond, const A&... parts) {
  if (!cond) fail(parts...);
}

}  // namespace judgeq
