// _dlmsgcm: AES-GCM for the DLMS/COSEM security layer (security suite 0/1, 128-bit key).
//
// A thin binding over mbedTLS's GCM (mbedtls_gcm_*): this file does argument checking
// and buffer handling only, no cryptography of its own. Its pure-Python twin is
// firmware/dlms/_gcm.py; both keep the same API, buffer rules and exception types
// (see docs/INTERFACES.md), and tests/mpy/test_gcm.py runs both side by side.
//
//   g = AESGCM(key16)
//   g.encrypt(iv, plaintext, aad, tag_len=12)  -> bytes ciphertext || tag
//   g.decrypt(iv, ciphertext, aad, tag_len=12) -> bytes plaintext   (ValueError on bad tag)
//   g.encrypt_into(iv, plaintext, aad, out, tag_len=12)  -> bytes written (len(pt) + tag_len)
//   g.decrypt_into(iv, ciphertext, aad, out, tag_len=12) -> bytes written (len(ct) - tag_len)
//
// Rules (identical in the twin):
// - key: 16 bytes; iv: 12 bytes (DLMS: system title || invocation counter); else ValueError.
// - tag_len: 4..16, or 0 for "no tag" (DLMS SC 0x20/0x21, encryption only: plain GCM
//   counter mode, nothing authenticated); else ValueError.
// - inputs: any object with the buffer protocol except str (TypeError), read as raw bytes.
// - out: a writable buffer (TypeError otherwise) at least as long as the result (ValueError);
//   it may be the input buffer itself (in place, same start) but must not overlap it
//   otherwise (ValueError).
// - authentication failure: ValueError; decrypt_into leaves out[:len(ct) - tag_len] zeroed.
//   A ciphertext shorter than tag_len: ValueError.

#include <string.h>

#include "py/runtime.h"
#include "py/objstr.h"

#include "mbedtls/gcm.h"

#define DLMSGCM_KEY_LEN (16)
#define DLMSGCM_IV_LEN (12)
#define DLMSGCM_TAG_MIN (4)
#define DLMSGCM_TAG_MAX (16)

typedef struct _dlmsgcm_obj_t {
    mp_obj_base_t base;
    bool ready; // ctx holds a key schedule that __del__ must release
    mbedtls_gcm_context ctx;
} dlmsgcm_obj_t;

static void get_bytes(mp_obj_t obj, mp_buffer_info_t *info, mp_uint_t flags) {
    // str has the buffer protocol in MicroPython; a str key or message is a bug, and the
    // twin cannot treat it as bytes either, so refuse it on both sides.
    if (mp_obj_is_str(obj)) {
        mp_raise_TypeError(MP_ERROR_TEXT("bytes-like object required"));
    }
    mp_get_buffer_raise(obj, info, flags);
}

static mp_obj_t dlmsgcm_make_new(const mp_obj_type_t *type, size_t n_args, size_t n_kw, const mp_obj_t *args) {
    mp_arg_check_num(n_args, n_kw, 1, 1, false);
    mp_buffer_info_t key;
    get_bytes(args[0], &key, MP_BUFFER_READ);
    if (key.len != DLMSGCM_KEY_LEN) {
        mp_raise_ValueError(MP_ERROR_TEXT("key must be 16 bytes"));
    }
    // mbedTLS allocates the AES context with its own calloc (libc on unix, tracked
    // allocations on rp2, IDF heap on esp32): the finaliser gives it back.
    dlmsgcm_obj_t *self = mp_obj_malloc_with_finaliser(dlmsgcm_obj_t, type);
    self->ready = false;
    mbedtls_gcm_init(&self->ctx);
    int ret = mbedtls_gcm_setkey(&self->ctx, MBEDTLS_CIPHER_ID_AES, key.buf, DLMSGCM_KEY_LEN * 8);
    if (ret != 0) {
        mbedtls_gcm_free(&self->ctx);
        mp_raise_msg_varg(&mp_type_OSError, MP_ERROR_TEXT("mbedtls_gcm_setkey: -0x%04x"), -ret);
    }
    self->ready = true;
    return MP_OBJ_FROM_PTR(self);
}

static mp_obj_t dlmsgcm_del(mp_obj_t self_in) {
    dlmsgcm_obj_t *self = MP_OBJ_TO_PTR(self_in);
    if (self->ready) {
        self->ready = false;
        mbedtls_gcm_free(&self->ctx); // also wipes the key schedule
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_1(dlmsgcm_del_obj, dlmsgcm_del);

// One parsed call: the four public methods differ only in direction and in where the
// result goes.
typedef struct {
    mp_buffer_info_t iv, data, aad;
    size_t tag_len;
} gcm_call_t;

enum { ARG_iv, ARG_data, ARG_aad, ARG_out_or_tag, ARG_tag_into };

static void check_common(gcm_call_t *c, mp_int_t tag_len, bool decrypt) {
    if (c->iv.len != DLMSGCM_IV_LEN) {
        mp_raise_ValueError(MP_ERROR_TEXT("iv must be 12 bytes"));
    }
    if (tag_len != 0 && (tag_len < DLMSGCM_TAG_MIN || tag_len > DLMSGCM_TAG_MAX)) {
        mp_raise_ValueError(MP_ERROR_TEXT("tag_len must be 0 or 4..16"));
    }
    c->tag_len = (size_t)tag_len;
    if (decrypt && c->data.len < c->tag_len) {
        mp_raise_ValueError(MP_ERROR_TEXT("ciphertext shorter than tag"));
    }
}

// Encrypt or decrypt c->data into dst (dst_len bytes of room already checked).
// Returns the number of bytes written; raises ValueError on authentication failure.
static size_t gcm_run(dlmsgcm_obj_t *self, gcm_call_t *c, uint8_t *dst, bool decrypt) {
    const uint8_t *src = c->data.buf;
    int ret;
    if (!decrypt) {
        size_t n = c->data.len;
        if (c->tag_len == 0) {
            // Encryption only: GCM's ciphertext, tag computed by mbedTLS and dropped.
            uint8_t unused[DLMSGCM_TAG_MAX];
            ret = mbedtls_gcm_crypt_and_tag(&self->ctx, MBEDTLS_GCM_ENCRYPT, n, c->iv.buf, c->iv.len,
                c->aad.buf, c->aad.len, src, dst, sizeof(unused), unused);
        } else {
            ret = mbedtls_gcm_crypt_and_tag(&self->ctx, MBEDTLS_GCM_ENCRYPT, n, c->iv.buf, c->iv.len,
                c->aad.buf, c->aad.len, src, dst, c->tag_len, dst + n);
        }
        if (ret != 0) {
            mp_raise_msg_varg(&mp_type_OSError, MP_ERROR_TEXT("mbedtls_gcm: -0x%04x"), -ret);
        }
        return n + c->tag_len;
    }
    size_t n = c->data.len - c->tag_len;
    if (c->tag_len == 0) {
        // No tag to check (SC 0x20/0x21): counter-mode decryption only.
        uint8_t unused[DLMSGCM_TAG_MAX];
        ret = mbedtls_gcm_crypt_and_tag(&self->ctx, MBEDTLS_GCM_DECRYPT, n, c->iv.buf, c->iv.len,
            c->aad.buf, c->aad.len, src, dst, sizeof(unused), unused);
    } else {
        // mbedtls_gcm_auth_decrypt compares the tag in constant time and zeroes dst on failure.
        ret = mbedtls_gcm_auth_decrypt(&self->ctx, n, c->iv.buf, c->iv.len, c->aad.buf, c->aad.len,
            src + n, c->tag_len, src, dst);
    }
    if (ret == MBEDTLS_ERR_GCM_AUTH_FAILED) {
        mp_raise_ValueError(MP_ERROR_TEXT("authentication failed"));
    }
    if (ret != 0) {
        mp_raise_msg_varg(&mp_type_OSError, MP_ERROR_TEXT("mbedtls_gcm: -0x%04x"), -ret);
    }
    return n;
}

static mp_obj_t gcm_method(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args,
    const mp_arg_t *allowed, size_t n_allowed, bool decrypt, bool into) {
    dlmsgcm_obj_t *self = MP_OBJ_TO_PTR(pos_args[0]);
    mp_arg_val_t args[5];
    mp_arg_parse_all(n_args - 1, pos_args + 1, kw_args, n_allowed, allowed, args);
    if (!self->ready) {
        mp_raise_ValueError(MP_ERROR_TEXT("no key"));
    }
    gcm_call_t c;
    get_bytes(args[ARG_iv].u_obj, &c.iv, MP_BUFFER_READ);
    get_bytes(args[ARG_data].u_obj, &c.data, MP_BUFFER_READ);
    get_bytes(args[ARG_aad].u_obj, &c.aad, MP_BUFFER_READ);
    mp_int_t tag_len = args[into ? ARG_tag_into : ARG_out_or_tag].u_int;
    mp_buffer_info_t out;
    if (into) {
        get_bytes(args[ARG_out_or_tag].u_obj, &out, MP_BUFFER_WRITE);
    }
    check_common(&c, tag_len, decrypt);
    size_t result_len = decrypt ? c.data.len - c.tag_len : c.data.len + c.tag_len;

    if (!into) {
        vstr_t vstr;
        vstr_init_len(&vstr, result_len);
        gcm_run(self, &c, (uint8_t *)vstr.buf, decrypt);
        return mp_obj_new_bytes_from_vstr(&vstr);
    }

    if (out.len < result_len) {
        mp_raise_ValueError(MP_ERROR_TEXT("out too small"));
    }
    // In place (same start) is fine for mbedTLS and the twin alike; any other overlap
    // between the message and the written region would read bytes already overwritten.
    const uint8_t *s = c.data.buf, *d = out.buf;
    if (s != d && c.data.len > 0 && result_len > 0 && s < d + result_len && d < s + c.data.len) {
        mp_raise_ValueError(MP_ERROR_TEXT("out overlaps input"));
    }
    return MP_OBJ_NEW_SMALL_INT(gcm_run(self, &c, out.buf, decrypt));
}

#define TAG_ARG { MP_QSTR_tag_len, MP_ARG_INT, {.u_int = 12} }

static const mp_arg_t encrypt_args[] = {
    { MP_QSTR_iv, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    { MP_QSTR_plaintext, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    { MP_QSTR_aad, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    TAG_ARG,
};
static const mp_arg_t decrypt_args[] = {
    { MP_QSTR_iv, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    { MP_QSTR_ciphertext, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    { MP_QSTR_aad, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    TAG_ARG,
};
static const mp_arg_t encrypt_into_args[] = {
    { MP_QSTR_iv, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    { MP_QSTR_plaintext, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    { MP_QSTR_aad, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    { MP_QSTR_out, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    TAG_ARG,
};
static const mp_arg_t decrypt_into_args[] = {
    { MP_QSTR_iv, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    { MP_QSTR_ciphertext, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    { MP_QSTR_aad, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    { MP_QSTR_out, MP_ARG_REQUIRED | MP_ARG_OBJ, {.u_obj = MP_OBJ_NULL} },
    TAG_ARG,
};

static mp_obj_t dlmsgcm_encrypt(size_t n_args, const mp_obj_t *args, mp_map_t *kw) {
    return gcm_method(n_args, args, kw, encrypt_args, MP_ARRAY_SIZE(encrypt_args), false, false);
}
static MP_DEFINE_CONST_FUN_OBJ_KW(dlmsgcm_encrypt_obj, 1, dlmsgcm_encrypt);

static mp_obj_t dlmsgcm_decrypt(size_t n_args, const mp_obj_t *args, mp_map_t *kw) {
    return gcm_method(n_args, args, kw, decrypt_args, MP_ARRAY_SIZE(decrypt_args), true, false);
}
static MP_DEFINE_CONST_FUN_OBJ_KW(dlmsgcm_decrypt_obj, 1, dlmsgcm_decrypt);

static mp_obj_t dlmsgcm_encrypt_into(size_t n_args, const mp_obj_t *args, mp_map_t *kw) {
    return gcm_method(n_args, args, kw, encrypt_into_args, MP_ARRAY_SIZE(encrypt_into_args), false, true);
}
static MP_DEFINE_CONST_FUN_OBJ_KW(dlmsgcm_encrypt_into_obj, 1, dlmsgcm_encrypt_into);

static mp_obj_t dlmsgcm_decrypt_into(size_t n_args, const mp_obj_t *args, mp_map_t *kw) {
    return gcm_method(n_args, args, kw, decrypt_into_args, MP_ARRAY_SIZE(decrypt_into_args), true, true);
}
static MP_DEFINE_CONST_FUN_OBJ_KW(dlmsgcm_decrypt_into_obj, 1, dlmsgcm_decrypt_into);

static const mp_rom_map_elem_t dlmsgcm_locals_dict_table[] = {
    { MP_ROM_QSTR(MP_QSTR___del__), MP_ROM_PTR(&dlmsgcm_del_obj) },
    { MP_ROM_QSTR(MP_QSTR_encrypt), MP_ROM_PTR(&dlmsgcm_encrypt_obj) },
    { MP_ROM_QSTR(MP_QSTR_decrypt), MP_ROM_PTR(&dlmsgcm_decrypt_obj) },
    { MP_ROM_QSTR(MP_QSTR_encrypt_into), MP_ROM_PTR(&dlmsgcm_encrypt_into_obj) },
    { MP_ROM_QSTR(MP_QSTR_decrypt_into), MP_ROM_PTR(&dlmsgcm_decrypt_into_obj) },
};
static MP_DEFINE_CONST_DICT(dlmsgcm_locals_dict, dlmsgcm_locals_dict_table);

static MP_DEFINE_CONST_OBJ_TYPE(
    dlmsgcm_type_AESGCM,
    MP_QSTR_AESGCM,
    MP_TYPE_FLAG_NONE,
    make_new, dlmsgcm_make_new,
    locals_dict, &dlmsgcm_locals_dict
    );

static const mp_rom_map_elem_t dlmsgcm_module_globals_table[] = {
    { MP_ROM_QSTR(MP_QSTR___name__), MP_ROM_QSTR(MP_QSTR__dlmsgcm) },
    { MP_ROM_QSTR(MP_QSTR_AESGCM), MP_ROM_PTR(&dlmsgcm_type_AESGCM) },
};
static MP_DEFINE_CONST_DICT(dlmsgcm_module_globals, dlmsgcm_module_globals_table);

const mp_obj_module_t dlmsgcm_user_cmodule = {
    .base = { &mp_type_module },
    .globals = (mp_obj_dict_t *)&dlmsgcm_module_globals,
};

MP_REGISTER_MODULE(MP_QSTR__dlmsgcm, dlmsgcm_user_cmodule);
