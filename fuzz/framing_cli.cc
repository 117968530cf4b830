// frame_header() for a differential test: reads one input per line (hex) on stdin and prints, for
// each, "complete <length>", "needmore" or "invalid <length>". Built by
// test/framing-differential.test.ts.
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "../native/header_framing.h"

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    std::vector<uint8_t> bytes;
    for (size_t i = 0; i + 1 < line.size(); i += 2)
      bytes.push_back(uint8_t(std::stoul(line.substr(i, 2), nullptr, 16)));
    size_t length = 0;
    switch (mmproxy::frame_header(bytes.data(), bytes.size(), &length)) {
      case mmproxy::Framing::kNeedMore:
        std::printf("needmore\n");
        break;
      case mmproxy::Framing::kComplete:
        std::printf("complete %zu\n", length);
        break;
      case mmproxy::Framing::kInvalid:
        std::printf("invalid %zu\n", length);
        break;
    }
  }
  return 0;
}
