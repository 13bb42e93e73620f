/*
 * The one fact about a buffer that JavaScript cannot see: where its bytes are.
 *
 * O_DIRECT writes need the memory they write from aligned to the device's
 * block size. Node allocates (Shared)ArrayBuffer memory with malloc, which
 * aligns to 16 bytes, so the buffer pool over-allocates by one alignment unit
 * and asks this addon where inside that allocation the first aligned byte is.
 * See daemon/store/direct-io.ts.
 *
 * N-API only (no V8 or libuv symbols): one build runs on every Node version
 * and architecture. No global state, so worker threads may load it.
 */
#include <node_api.h>
#include <stdint.h>

#define THROW(msg) do { napi_throw_type_error(env, "ERR_BUFFER_ADDRESS", "buffer-address: " msg); return NULL; } while (0)

/* alignmentOffset(view: Uint8Array, alignment: number) -> bytes from the view's start to its first byte at an address divisible by alignment. */
static napi_value alignment_offset(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) THROW("expected (view, alignment)");
  bool is;
  if (napi_is_typedarray(env, argv[0], &is) != napi_ok || !is) THROW("view must be a Uint8Array");
  napi_typedarray_type type;
  size_t length, offset;
  napi_value ab;
  void *data;
  if (napi_get_typedarray_info(env, argv[0], &type, &length, &data, &ab, &offset) != napi_ok || type != napi_uint8_array) THROW("view must be a Uint8Array");
  uint32_t align;
  if (napi_get_value_uint32(env, argv[1], &align) != napi_ok || align == 0 || (align & (align - 1))) THROW("alignment must be a power of two");
  uint32_t mis = (uint32_t)((uintptr_t)data & (align - 1));
  napi_value out;
  if (napi_create_uint32(env, mis ? align - mis : 0, &out) != napi_ok) return NULL;
  return out;
}

NAPI_MODULE_INIT() {
  napi_value f;
  if (napi_create_function(env, "alignmentOffset", NAPI_AUTO_LENGTH, alignment_offset, NULL, &f) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "alignmentOffset", f) != napi_ok) return NULL;
  return exports;
}
