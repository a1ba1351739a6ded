/*
 * test_text.c - names, UTF-8 and the base64 alphabet.
 */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "error.h"
#include "text.h"

static void test_names(void)
{
    static const struct {
        const char *name;
        bool valid;
    } cases[] = {
        {"faces-v1", true},
        {"A.b_c-9", true},
        {"x", true},
        {"", false},
        {"a/b", false},
        {"a b", false},
        {"caf\xc3\xa9", false},
        {"0123456789012345678901234567890123456789012345678901234567890123", true},
        {"01234567890123456789012345678901234567890123456789012345678901234", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_EQ(cd_name_valid(cases[i].name), cases[i].valid);
    CHECK(!cd_name_valid(NULL));
}

static void test_utf8(void)
{
    static const struct {
        const char *s;
        bool valid;
    } cases[] = {
        {"plain", true},
        {"caf\xc3\xa9", true},
        {"\xe2\x82\xac", true},             /* euro sign */
        {"\xf0\x9f\x98\x80", true},         /* emoji */
        {"\xc3", false},                    /* truncated */
        {"\xc0\xaf", false},                /* overlong '/' */
        {"\xed\xa0\x80", false},            /* surrogate */
        {"\xf4\x90\x80\x80", false},        /* above U+10FFFF */
        {"\xff", false},
        {"a\x80", false},                   /* lone continuation */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_EQ(cd_utf8_valid(cases[i].s, strlen(cases[i].s)), cases[i].valid);
}

static void test_utf8_cut(void)
{
    static const struct {
        const char *s;
        size_t n, want;
    } cases[] = {
        {"abc", 3, 3},
        {"ab\xc3\xa9", 4, 4},              /* whole 2-byte character */
        {"ab\xc3\xa9", 3, 2},              /* its first byte only */
        {"\xe2\x82\xac", 2, 0},           /* euro sign, 2 of 3 bytes */
        {"a\xe2\x82\xac", 4, 4},
        {"a\xf0\x9f\x98\x80", 4, 1},      /* emoji, 3 of 4 bytes */
        {"a\xf0\x9f\x98\x80", 5, 5},
        {"", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_EQ(cd_utf8_cut(cases[i].s, cases[i].n), cases[i].want);

    /* A message cut at CD_ERRMSG_MAX stays valid UTF-8. */
    char text[2 * CD_ERRMSG_MAX];
    for (size_t i = 0; i + 2 < sizeof text; i += 2)
        memcpy(text + i, "\xc3\xa9", 2);
    text[sizeof text - 2] = '\0';
    for (int shift = 0; shift < 2; shift++) {
        cd_error err;
        CHECK_EQ(cd__fail(&err, CD_EINVAL, "%.*s%s", shift, "x", text), CD_EINVAL);
        CHECK(strlen(err.message) >= CD_ERRMSG_MAX - 2);
        CHECK(cd_utf8_valid(err.message, strlen(err.message)));
    }
}

/* RFC 4648's test vectors, and bytes that need the two alphabets' last
 * characters (0xfb 0xff: "+/8=" and "-_8"). */
static void test_b64_encode(void)
{
    static const struct {
        const char *bytes, *std, *url;
    } cases[] = {
        {"", "", ""},
        {"f", "Zg==", "Zg"},
        {"fo", "Zm8=", "Zm8"},
        {"foo", "Zm9v", "Zm9v"},
        {"foob", "Zm9vYg==", "Zm9vYg"},
        {"fooba", "Zm9vYmE=", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
        {"\xfb\xff", "+/8=", "-_8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const unsigned char *b = (const unsigned char *)cases[i].bytes;
        size_t n = strlen(cases[i].bytes);
        char out[16];
        CHECK_EQ(cd__b64_encode(b, n, false, out), strlen(cases[i].std));
        CHECK_STREQ(out, cases[i].std);
        CHECK_EQ(cd__b64_encode(b, n, true, out), strlen(cases[i].url));
        CHECK_STREQ(out, cases[i].url);
    }
}

/* Every byte against the alphabet written out: its index, or -1. */
/* base64url without padding back to bytes (RFC 4648 section 10's
 * vectors), and what it must refuse. */
static void test_b64url_decode(void)
{
    static const struct {
        const char *text, *bytes;   /* bytes NULL: refused */
    } cases[] = {
        {"", ""},
        {"Zg", "f"},
        {"Zm8", "fo"},
        {"Zm9v", "foo"},
        {"Zm9vYg", "foob"},
        {"Zm9vYmFy", "foobar"},
        {"-_8", "\xfb\xff"},
        {"Zg==", NULL},         /* padding */
        {"+/8", NULL},          /* the standard alphabet's 62 and 63 */
        {"Z", NULL},            /* no encoding is 1 mod 4 long */
        {"Zh", NULL},           /* spare bits set */
        {"Zm9 v", NULL},
        {"Zm9vYmFyYmF6", NULL}, /* more than the 8 bytes of room */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char out[8];
        size_t n = 99;
        bool ok = cd__b64url_decode(cases[i].text, out, sizeof out, &n);
        CHECK_EQ(ok, cases[i].bytes != NULL);
        if (ok && cases[i].bytes) {
            CHECK_EQ(n, strlen(cases[i].bytes));
            CHECK(memcmp(out, cases[i].bytes, n) == 0);
        }
    }
}

static void test_b64_value(void)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int c = 0; c < 256; c++) {
        const char *at = c ? strchr(alphabet, c) : NULL;
        CHECK_EQ(cd__b64_value((unsigned char)c), at ? (int)(at - alphabet) : -1);
    }
}

int main(void)
{
    test_names();
    test_utf8();
    test_utf8_cut();
    test_b64_encode();
    test_b64_value();
    test_b64url_decode();
    return check_exit();
}
