{
  "targets": [
    {
      "target_name": "mmproxy_native",
      "sources": [
        "native/addon.cc", "native/probe.cc", "native/sock_addr.cc", "native/transparent_socket.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2", "-fvisibility=hidden"],
      "conditions": [
        ["OS!='linux'", {"sources!": [], "defines": ["MMPROXY_UNSUPPORTED_OS"]}]
      ]
    }
  ]
}
