{
  "targets": [
    {
      "target_name": "mmproxy_native",
      "sources": [
        "native/addon.cc", "native/probe.cc", "native/sock_addr.cc", "native/transparent_socket.cc", "native/allow_table.cc", "native/binding.cc", "native/connect_check.cc", "native/engine.cc", "native/engine_binding.cc", "native/header_framing.cc", "native/local_table.cc", "native/pipe_pool.cc", "native/tcp_session.cc", "native/tcp_worker.cc", "native/worker_thread.cc", "native/worker_binding.cc", "native/systemd_notify.cc", "native/udp_flow_table.cc", "native/udp_worker.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "-O2", "-fvisibility=hidden"],
      "conditions": [
        ["OS!='linux'", {"sources!": [], "defines": ["MMPROXY_UNSUPPORTED_OS"]}]
      ]
    }
  ]
}
