// N-API entry point: module registration and the per-environment Addon state.
// Runs on the JavaScript thread only.
#include <napi.h>

#include <string>
#include <vector>

#include "binding.h"
#include "local_table.h"
#include "probe.h"

namespace mmproxy {

namespace {

constexpr int kInterfaceVersion = 2;

Napi::Value ProbeTransparent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int family = info[0].As<Napi::Number>().Int32Value() == 6 ? 6 : 4;
  ProbeResult r = probe_transparent(family);
  Napi::Object out = Napi::Object::New(env);
  out.Set("ok", Napi::Boolean::New(env, r.err == 0));
  if (r.err != 0) {
    out.Set("errno", Napi::Number::New(env, r.err));
    out.Set("syscall", Napi::String::New(env, r.syscall));
  }
  return out;
}

// localTable() → ["127.0.0.0/8", "192.0.2.1/32", ...]: the kernel's local table; throws a
// system error when netlink cannot be read.
Napi::Value LocalTable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<std::string> prefixes;
  int err = 0;
  const char* syscall = "";
  if (!dump_local_table(&prefixes, &err, &syscall)) {
    system_error(env, err, syscall).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array out = Napi::Array::New(env, prefixes.size());
  for (size_t i = 0; i < prefixes.size(); i++) out.Set(uint32_t(i), prefixes[i]);
  return out;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // lib/native.ts refuses an addon whose interface version it does not know.
  exports.Set("interfaceVersion", Napi::Number::New(env, kInterfaceVersion));
  exports.Set("probeTransparent", Napi::Function::New(env, ProbeTransparent, "probeTransparent"));
  exports.Set("localTable", Napi::Function::New(env, LocalTable, "localTable"));
  init_engine(env, exports);
  init_connect_check(env, exports);
  return exports;
}

}  // namespace mmproxy

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return mmproxy::Init(env, exports);
}

NODE_API_MODULE(mmproxy_native, InitModule)
