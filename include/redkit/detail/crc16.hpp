// CRC16-XMODEM (polynomial 0x1021, initial value 0, no reflection), the
// checksum Redis Cluster uses to map keys to hash slots. Thread safety: pure
// functions.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace redkit::detail {

inline constexpr std::array<std::uint16_t, 256> make_crc16_table() {
  std::array<std::uint16_t, 256> table{};
  for (unsigned byte = 0; byte < 256; ++byte) {
    std::uint16_t crc = static_cast<std::uint16_t>(byte << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<std::uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    table[byte] = crc;
  }
  return table;
}

inline constexpr std::array<std::uint16_t, 256> kCrc16Table = make_crc16_table();

inline std::uint16_t crc16(std::string_view data) noexcept {
  std::uint16_t crc = 0;
  for (char c : data) {
    const auto byte = static_cast<unsigned char>(c);
    crc = static_cast<std::uint16_t>((crc << 8) ^ kCrc16Table[((crc >> 8) ^ byte) & 0xff]);
  }
  return crc;
}

}  // namespace redkit::detail
