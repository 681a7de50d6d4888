;; kvcounter.wat: a hand-written wasmbus actor that behaves like the wasmCloud 0.x `kvcounter`
;; example (vector `kvcounter` in wasmbus-recorded.json), byte for byte.
;;
;;   HttpServer.HandleRequest  key = "counter:" + path with every "/" replaced by ":"
;;                             ("/foo" -> "counter::foo"), then
;;                             __host_call("default", "wasmcloud:keyvalue", "KeyValue.Increment",
;;                                         IncrementRequest {key, value: 1})
;;                             and the reply (a msgpack int, the new value) becomes
;;                             HttpResponse {body: {"counter":N}, header: {}, statusCode: 200}
;;                             (that key order, as the recorded actor writes it)
;;   Actor.HealthRequest       -> {healthy: true}
;;   any other operation       -> guest error "Guest call failed for method {op}: method not handled"
;;
;; A failed host call is passed on verbatim: the guest fetches the host error text with
;; __host_error_len/__host_error, hands it to __guest_error and returns 0.
;; Malformed input or a reply that is not an i32 never traps: it becomes a guest error.
(module
  (import "wasmbus" "__guest_request"     (func $guest_request     (param i32 i32)))
  (import "wasmbus" "__guest_response"    (func $guest_response    (param i32 i32)))
  (import "wasmbus" "__guest_error"       (func $guest_error       (param i32 i32)))
  (import "wasmbus" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasmbus" "__host_response_len" (func $host_response_len (result i32)))
  (import "wasmbus" "__host_response"     (func $host_response     (param i32)))
  (import "wasmbus" "__host_error_len"    (func $host_error_len    (result i32)))
  (import "wasmbus" "__host_error"        (func $host_error        (param i32)))

  (memory (export "memory") 1)

  ;; ---------------------------------------------------------------------------------------
  ;; Constants (offset ;; length)
  ;; ---------------------------------------------------------------------------------------
  (data (i32.const 64)  "HttpServer.HandleRequest")                 ;; 24
  (data (i32.const 96)  "Actor.HealthRequest")                      ;; 19
  (data (i32.const 128) "path")                                     ;; 4
  (data (i32.const 136) "default")                                  ;; 7  (link name)
  (data (i32.const 144) "wasmcloud:keyvalue")                       ;; 18 (contract id)
  (data (i32.const 168) "KeyValue.Increment")                       ;; 18
  (data (i32.const 192) "counter:")                                 ;; 8
  ;; IncrementRequest {key: <str follows>, ... value: 1}
  (data (i32.const 200) "\82\a3key")                                ;; 5
  (data (i32.const 208) "\a5value\01")                              ;; 7
  ;; HttpResponse {body: <bin follows>, ... header: {}, statusCode: 200}
  (data (i32.const 216) "\83\a4body")                               ;; 6
  (data (i32.const 224) "\a6header\80\aastatusCode\cc\c8")          ;; 21
  (data (i32.const 248) "{\"counter\":")                            ;; 11
  (data (i32.const 264) "\81\a7healthy\c3")                         ;; 10
  (data (i32.const 288) "Guest call failed for method ")            ;; 29
  (data (i32.const 320) ": method not handled")                     ;; 20
  (data (i32.const 352) ": deserialization error: invalid HttpRequest") ;; 44
  (data (i32.const 400) ": deserialization error: KeyValue.Increment reply is not an i32") ;; 63
  (data (i32.const 480) "Guest call failed: out of memory")         ;; 32

  ;; msgpack type table for first bytes 0xc0..0xdf: 3 bytes each = (kind, header size,
  ;; size of the big-endian length field that starts right after the type byte).
  ;; Kinds: 0 scalar (header size = whole value), 1 str, 2 bin, 3 ext (n payload bytes follow
  ;; the header), 4 array (n items follow), 5 map (n pairs follow), 6 invalid.
  (data (i32.const 512)
    "\00\01\00"   ;; c0 nil
    "\06\01\00"   ;; c1 (never used)
    "\00\01\00"   ;; c2 false
    "\00\01\00"   ;; c3 true
    "\02\02\01"   ;; c4 bin8
    "\02\03\02"   ;; c5 bin16
    "\02\05\04"   ;; c6 bin32
    "\03\03\01"   ;; c7 ext8   (type, len8, ext type)
    "\03\04\02"   ;; c8 ext16
    "\03\06\04"   ;; c9 ext32
    "\00\05\00"   ;; ca float32
    "\00\09\00"   ;; cb float64
    "\00\02\00"   ;; cc uint8
    "\00\03\00"   ;; cd uint16
    "\00\05\00"   ;; ce uint32
    "\00\09\00"   ;; cf uint64
    "\00\02\00"   ;; d0 int8
    "\00\03\00"   ;; d1 int16
    "\00\05\00"   ;; d2 int32
    "\00\09\00"   ;; d3 int64
    "\00\03\00"   ;; d4 fixext1
    "\00\04\00"   ;; d5 fixext2
    "\00\06\00"   ;; d6 fixext4
    "\00\0a\00"   ;; d7 fixext8
    "\00\12\00"   ;; d8 fixext16
    "\01\02\01"   ;; d9 str8
    "\01\03\02"   ;; da str16
    "\01\05\04"   ;; db str32
    "\04\03\02"   ;; dc array16
    "\04\05\04"   ;; dd array32
    "\05\03\02"   ;; de map16
    "\05\05\04")  ;; df map32

  (global $HEAP_BASE i32 (i32.const 1024))
  (global $heap (mut i32) (i32.const 1024))   ;; next free byte
  (global $w (mut i32) (i32.const 0))         ;; write cursor of the $put* helpers

  (func (export "__actor_api_version") (result i32) (i32.const 1))

  ;; ---------------------------------------------------------------------------------------
  ;; Memory helpers (same as echo.wat)
  ;; ---------------------------------------------------------------------------------------

  ;; Bump allocator: a pointer to $n fresh bytes, or -1 when memory cannot grow that far.
  (func $alloc (param $n i32) (result i32)
    (local $ptr i32) (local $end i64) (local $have i64)
    (local.set $ptr (global.get $heap))
    (local.set $end (i64.add (i64.extend_i32_u (local.get $ptr)) (i64.extend_i32_u (local.get $n))))
    (local.set $have (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.gt_u (local.get $end) (local.get $have))
      (then
        ;; grow by ceil(missing / 64 KiB) pages
        (if (i32.eq
              (memory.grow (i32.wrap_i64 (i64.shr_u
                (i64.add (i64.sub (local.get $end) (local.get $have)) (i64.const 0xffff))
                (i64.const 16))))
              (i32.const -1))
          (then (return (i32.const -1))))))
    (global.set $heap (i32.wrap_i64 (local.get $end)))
    (local.get $ptr))

  ;; 1 when the $n bytes at $a equal the $n bytes at $b.
  (func $memeq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (local $i i32)
    (block $differ
      (loop $each
        (if (i32.lt_u (local.get $i) (local.get $n))
          (then
            (br_if $differ (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                                   (i32.load8_u (i32.add (local.get $b) (local.get $i)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $each))))
      (return (i32.const 1)))
    (i32.const 0))

  ;; 1 when the bytes ($p, $n) equal the constant ($c, $cn).
  (func $streq (param $p i32) (param $n i32) (param $c i32) (param $cn i32) (result i32)
    (if (i32.ne (local.get $n) (local.get $cn)) (then (return (i32.const 0))))
    (call $memeq (local.get $p) (local.get $c) (local.get $n)))

  ;; 1 when ($p, $n) is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF).
  (func $utf8_ok (param $p i32) (param $n i32) (result i32)
    (local $i i32) (local $c i32) (local $more i32) (local $lo i32) (local $hi i32)
    (block $bad
      (loop $each
        (if (i32.lt_u (local.get $i) (local.get $n))
          (then
            (local.set $c (i32.load8_u (i32.add (local.get $p) (local.get $i))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $each (i32.lt_u (local.get $c) (i32.const 0x80)))     ;; ASCII
            (br_if $bad (i32.lt_u (local.get $c) (i32.const 0xc2)))      ;; stray or overlong
            (br_if $bad (i32.gt_u (local.get $c) (i32.const 0xf4)))      ;; beyond U+10FFFF
            (local.set $lo (i32.const 0x80))
            (local.set $hi (i32.const 0xbf))
            (if (i32.lt_u (local.get $c) (i32.const 0xe0))
              (then (local.set $more (i32.const 1)))
              (else (if (i32.lt_u (local.get $c) (i32.const 0xf0))
                (then
                  (local.set $more (i32.const 2))
                  (if (i32.eq (local.get $c) (i32.const 0xe0)) (then (local.set $lo (i32.const 0xa0))))
                  (if (i32.eq (local.get $c) (i32.const 0xed)) (then (local.set $hi (i32.const 0x9f)))))
                (else
                  (local.set $more (i32.const 3))
                  (if (i32.eq (local.get $c) (i32.const 0xf0)) (then (local.set $lo (i32.const 0x90))))
                  (if (i32.eq (local.get $c) (i32.const 0xf4)) (then (local.set $hi (i32.const 0x8f))))))))
            (br_if $bad (i32.gt_u (local.get $more) (i32.sub (local.get $n) (local.get $i))))
            ;; the first continuation byte has the lead-byte-specific range
            (local.set $c (i32.load8_u (i32.add (local.get $p) (local.get $i))))
            (br_if $bad (i32.lt_u (local.get $c) (local.get $lo)))
            (br_if $bad (i32.gt_u (local.get $c) (local.get $hi)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (local.set $more (i32.sub (local.get $more) (i32.const 1)))
            (loop $cont
              (if (local.get $more)
                (then
                  (local.set $c (i32.load8_u (i32.add (local.get $p) (local.get $i))))
                  (br_if $bad (i32.ne (i32.and (local.get $c) (i32.const 0xc0)) (i32.const 0x80)))
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (local.set $more (i32.sub (local.get $more) (i32.const 1)))
                  (br $cont))))
            (br $each))))
      (return (i32.const 1)))
    (i32.const 0))

  ;; ---------------------------------------------------------------------------------------
  ;; Output helpers: append at $w
  ;; ---------------------------------------------------------------------------------------

  (func $put (param $b i32)
    (i32.store8 (global.get $w) (local.get $b))
    (global.set $w (i32.add (global.get $w) (i32.const 1))))

  (func $put_bytes (param $p i32) (param $n i32)
    (memory.copy (global.get $w) (local.get $p) (local.get $n))
    (global.set $w (i32.add (global.get $w) (local.get $n))))

  ;; msgpack bin header for $n bytes, smallest form (as rmp writes it).
  (func $put_bin_header (param $n i32)
    (if (i32.lt_u (local.get $n) (i32.const 256))
      (then (call $put (i32.const 0xc4)) (call $put (local.get $n)))
      (else (if (i32.lt_u (local.get $n) (i32.const 65536))
        (then
          (call $put (i32.const 0xc5))
          (call $put (i32.shr_u (local.get $n) (i32.const 8)))
          (call $put (local.get $n)))
        (else
          (call $put (i32.const 0xc6))
          (call $put (i32.shr_u (local.get $n) (i32.const 24)))
          (call $put (i32.shr_u (local.get $n) (i32.const 16)))
          (call $put (i32.shr_u (local.get $n) (i32.const 8)))
          (call $put (local.get $n)))))))

  ;; ---------------------------------------------------------------------------------------
  ;; msgpack reading. Positions are absolute addresses; $end is one past the last input byte.
  ;; ---------------------------------------------------------------------------------------

  ;; Big-endian unsigned integer of $size (0, 1, 2 or 4) bytes at $p.
  (func $be (param $p i32) (param $size i32) (result i32)
    (local $v i32) (local $i i32)
    (loop $each
      (if (i32.lt_u (local.get $i) (local.get $size))
        (then
          (local.set $v (i32.or (i32.shl (local.get $v) (i32.const 8))
                                (i32.load8_u (i32.add (local.get $p) (local.get $i)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $each))))
    (local.get $v))

  ;; The header of the value at $pos: (kind, header size, n); see the type table for kinds.
  ;; Kind 6 when the type byte is invalid or the header itself is truncated.
  (func $header (param $pos i32) (param $end i32) (result i32 i32 i32)
    (local $b i32) (local $t i32) (local $size i32)
    (if (i32.ge_u (local.get $pos) (local.get $end))
      (then (return (i32.const 6) (i32.const 0) (i32.const 0))))
    (local.set $b (i32.load8_u (local.get $pos)))
    (if (i32.lt_u (local.get $b) (i32.const 0x80))                 ;; positive fixint
      (then (return (i32.const 0) (i32.const 1) (i32.const 0))))
    (if (i32.lt_u (local.get $b) (i32.const 0x90))                 ;; fixmap
      (then (return (i32.const 5) (i32.const 1) (i32.and (local.get $b) (i32.const 0x0f)))))
    (if (i32.lt_u (local.get $b) (i32.const 0xa0))                 ;; fixarray
      (then (return (i32.const 4) (i32.const 1) (i32.and (local.get $b) (i32.const 0x0f)))))
    (if (i32.lt_u (local.get $b) (i32.const 0xc0))                 ;; fixstr
      (then (return (i32.const 1) (i32.const 1) (i32.and (local.get $b) (i32.const 0x1f)))))
    (if (i32.ge_u (local.get $b) (i32.const 0xe0))                 ;; negative fixint
      (then (return (i32.const 0) (i32.const 1) (i32.const 0))))
    (local.set $t (i32.add (i32.const 512) (i32.mul (i32.sub (local.get $b) (i32.const 0xc0)) (i32.const 3))))
    (local.set $size (i32.load8_u offset=1 (local.get $t)))
    (if (i32.gt_u (local.get $size) (i32.sub (local.get $end) (local.get $pos)))
      (then (return (i32.const 6) (i32.const 0) (i32.const 0))))
    (i32.load8_u (local.get $t))
    (local.get $size)
    (call $be (i32.add (local.get $pos) (i32.const 1)) (i32.load8_u offset=2 (local.get $t))))

  ;; Position after the value at $pos, or -1 if it is malformed or truncated. Iterative (a
  ;; count of values still to skip), so deeply nested input cannot exhaust the wasm stack.
  (func $skip (param $pos i32) (param $end i32) (result i32)
    (local $todo i64) (local $kind i32) (local $size i32) (local $n i32)
    (local.set $todo (i64.const 1))
    (loop $more
      (call $header (local.get $pos) (local.get $end))
      (local.set $n) (local.set $size) (local.set $kind)
      (if (i32.eq (local.get $kind) (i32.const 6)) (then (return (i32.const -1))))
      (local.set $pos (i32.add (local.get $pos) (local.get $size)))
      (if (i32.and (i32.ge_u (local.get $kind) (i32.const 1)) (i32.le_u (local.get $kind) (i32.const 3)))
        (then
          (if (i32.gt_u (local.get $n) (i32.sub (local.get $end) (local.get $pos)))
            (then (return (i32.const -1))))
          (local.set $pos (i32.add (local.get $pos) (local.get $n)))))
      (if (i32.eq (local.get $kind) (i32.const 4))
        (then (local.set $todo (i64.add (local.get $todo) (i64.extend_i32_u (local.get $n))))))
      (if (i32.eq (local.get $kind) (i32.const 5))
        (then (local.set $todo (i64.add (local.get $todo)
                                        (i64.shl (i64.extend_i32_u (local.get $n)) (i64.const 1))))))
      (local.set $todo (i64.sub (local.get $todo) (i64.const 1)))
      (br_if $more (i64.ne (local.get $todo) (i64.const 0))))
    (local.get $pos))

  ;; A str (or, when $allow_bin, a bin) at $pos: (data pointer, length, next position);
  ;; next position -1 when it is something else or truncated.
  (func $read_blob (param $pos i32) (param $end i32) (param $allow_bin i32) (result i32 i32 i32)
    (local $kind i32) (local $size i32) (local $n i32) (local $ptr i32)
    (call $header (local.get $pos) (local.get $end))
    (local.set $n) (local.set $size) (local.set $kind)
    (if (i32.eqz (i32.or (i32.eq (local.get $kind) (i32.const 1))
                         (i32.and (local.get $allow_bin) (i32.eq (local.get $kind) (i32.const 2)))))
      (then (return (i32.const 0) (i32.const 0) (i32.const -1))))
    (local.set $ptr (i32.add (local.get $pos) (local.get $size)))
    (if (i32.gt_u (local.get $n) (i32.sub (local.get $end) (local.get $ptr)))
      (then (return (i32.const 0) (i32.const 0) (i32.const -1))))
    (local.get $ptr)
    (local.get $n)
    (i32.add (local.get $ptr) (local.get $n)))

  ;; msgpack str header for $n bytes, smallest form (as rmp writes it).
  (func $put_str_header (param $n i32)
    (if (i32.lt_u (local.get $n) (i32.const 32))
      (then (call $put (i32.or (i32.const 0xa0) (local.get $n))))
      (else (if (i32.lt_u (local.get $n) (i32.const 256))
        (then (call $put (i32.const 0xd9)) (call $put (local.get $n)))
        (else (if (i32.lt_u (local.get $n) (i32.const 65536))
          (then
            (call $put (i32.const 0xda))
            (call $put (i32.shr_u (local.get $n) (i32.const 8)))
            (call $put (local.get $n)))
          (else
            (call $put (i32.const 0xdb))
            (call $put (i32.shr_u (local.get $n) (i32.const 24)))
            (call $put (i32.shr_u (local.get $n) (i32.const 16)))
            (call $put (i32.shr_u (local.get $n) (i32.const 8)))
            (call $put (local.get $n)))))))))

  ;; Signed decimal of $n: digits least significant first, then reversed in place.
  (func $put_i64 (param $n i64)
    (local $u i64) (local $i i32) (local $j i32) (local $t i32)
    (local.set $u (local.get $n))
    (if (i64.lt_s (local.get $n) (i64.const 0))
      (then
        (call $put (i32.const 0x2d))                          ;; -
        (local.set $u (i64.sub (i64.const 0) (local.get $n)))))
    (local.set $i (global.get $w))
    (loop $digit
      (call $put (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $u) (i64.const 10)))))
      (local.set $u (i64.div_u (local.get $u) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $u) (i64.const 0))))
    (local.set $j (i32.sub (global.get $w) (i32.const 1)))
    (loop $swap
      (if (i32.lt_u (local.get $i) (local.get $j))
        (then
          (local.set $t (i32.load8_u (local.get $i)))
          (i32.store8 (local.get $i) (i32.load8_u (local.get $j)))
          (i32.store8 (local.get $j) (local.get $t))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (local.set $j (i32.sub (local.get $j) (i32.const 1)))
          (br $swap)))))

  ;; A msgpack integer at $pos that fits an i32: (value, 1), or (0, 0) for anything else.
  ;; Accepts positive/negative fixint, uint8/16/32/64 and int8/16/32/64.
  (func $read_i32 (param $pos i32) (param $end i32) (result i64 i32)
    (local $b i32) (local $size i32) (local $v i64) (local $i i32)
    (if (i32.ge_u (local.get $pos) (local.get $end))
      (then (return (i64.const 0) (i32.const 0))))
    (local.set $b (i32.load8_u (local.get $pos)))
    (if (i32.lt_u (local.get $b) (i32.const 0x80))                      ;; positive fixint
      (then (return (i64.extend_i32_u (local.get $b)) (i32.const 1))))
    (if (i32.ge_u (local.get $b) (i32.const 0xe0))                      ;; negative fixint
      (then (return (i64.sub (i64.extend_i32_u (local.get $b)) (i64.const 256)) (i32.const 1))))
    (if (i32.or (i32.lt_u (local.get $b) (i32.const 0xcc)) (i32.gt_u (local.get $b) (i32.const 0xd3)))
      (then (return (i64.const 0) (i32.const 0))))
    ;; cc..cf uint8..uint64, d0..d3 int8..int64: 1, 2, 4 or 8 big-endian bytes
    (local.set $size (i32.shl (i32.const 1) (i32.and (i32.sub (local.get $b) (i32.const 0xcc)) (i32.const 3))))
    (if (i32.gt_u (i32.add (local.get $size) (i32.const 1)) (i32.sub (local.get $end) (local.get $pos)))
      (then (return (i64.const 0) (i32.const 0))))
    (loop $each
      (if (i32.lt_u (local.get $i) (local.get $size))
        (then
          (local.set $v (i64.or (i64.shl (local.get $v) (i64.const 8))
                                (i64.load8_u offset=1 (i32.add (local.get $pos) (local.get $i)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $each))))
    (if (i32.ge_u (local.get $b) (i32.const 0xd0))                      ;; signed: extend
      (then
        (if (i32.eq (local.get $size) (i32.const 1)) (then (local.set $v (i64.extend8_s (local.get $v)))))
        (if (i32.eq (local.get $size) (i32.const 2)) (then (local.set $v (i64.extend16_s (local.get $v)))))
        (if (i32.eq (local.get $size) (i32.const 4)) (then (local.set $v (i64.extend32_s (local.get $v))))))
      (else                                                               ;; uint64 above 2^63
        (if (i64.lt_s (local.get $v) (i64.const 0)) (then (return (i64.const 0) (i32.const 0))))))
    (if (i32.or (i64.lt_s (local.get $v) (i64.const -2147483648))
                (i64.gt_s (local.get $v) (i64.const 2147483647)))
      (then (return (i64.const 0) (i32.const 0))))
    (local.get $v)
    (i32.const 1))

  ;; ---------------------------------------------------------------------------------------
  ;; Errors
  ;; ---------------------------------------------------------------------------------------

  ;; Report "Guest call failed for method {op}{reason}" and return 0 (the __guest_call result).
  (func $fail (param $op i32) (param $op_len i32) (param $reason i32) (param $reason_len i32) (result i32)
    (local $msg i32)
    (local.set $msg (call $alloc (i32.add (i32.add (i32.const 29) (local.get $op_len)) (local.get $reason_len))))
    (if (i32.eq (local.get $msg) (i32.const -1))
      (then
        (call $guest_error (i32.const 480) (i32.const 32))
        (return (i32.const 0))))
    (global.set $w (local.get $msg))
    (call $put_bytes (i32.const 288) (i32.const 29))
    (call $put_bytes (local.get $op) (local.get $op_len))
    (call $put_bytes (local.get $reason) (local.get $reason_len))
    (call $guest_error (local.get $msg) (i32.sub (global.get $w) (local.get $msg)))
    (i32.const 0))

  (func $out_of_memory (result i32)
    (call $guest_error (i32.const 480) (i32.const 32))
    (i32.const 0))

  ;; ---------------------------------------------------------------------------------------
  ;; HttpServer.HandleRequest
  ;; ---------------------------------------------------------------------------------------

  (func $handle_http (param $op i32) (param $op_len i32) (param $p i32) (param $len i32) (result i32)
    (local $end i32) (local $pos i32) (local $pairs i32) (local $kind i32) (local $size i32)
    (local $kp i32) (local $kn i32) (local $pp i32) (local $pn i32)
    (local $key_len i32) (local $req i32) (local $i i32) (local $c i32)
    (local $rc i32) (local $n i32) (local $buf i32) (local $value i64) (local $ok i32)
    (local $json i32) (local $jlen i32) (local $resp i32)
    (local.set $end (i32.add (local.get $p) (local.get $len)))
    (block $bad
      ;; find "path" in the HttpRequest map; every other field is skipped
      (call $header (local.get $p) (local.get $end))
      (local.set $pairs) (local.set $size) (local.set $kind)
      (br_if $bad (i32.ne (local.get $kind) (i32.const 5)))
      (local.set $pos (i32.add (local.get $p) (local.get $size)))
      (loop $field
        (if (local.get $pairs)
          (then
            (call $read_blob (local.get $pos) (local.get $end) (i32.const 0))
            (local.set $pos) (local.set $kn) (local.set $kp)
            (br_if $bad (i32.eq (local.get $pos) (i32.const -1)))
            (if (call $streq (local.get $kp) (local.get $kn) (i32.const 128) (i32.const 4))
              (then
                (call $read_blob (local.get $pos) (local.get $end) (i32.const 1))
                (local.set $pos) (local.set $pn) (local.set $pp))
              (else (local.set $pos (call $skip (local.get $pos) (local.get $end)))))
            (br_if $bad (i32.eq (local.get $pos) (i32.const -1)))
            (local.set $pairs (i32.sub (local.get $pairs) (i32.const 1)))
            (br $field))))
      (br_if $bad (i32.eqz (call $utf8_ok (local.get $pp) (local.get $pn))))
      (br_if $bad (i32.gt_u (local.get $pn) (i32.const 0x10000000)))

      ;; IncrementRequest {key: "counter:" + path with "/" -> ":", value: 1}
      (local.set $key_len (i32.add (i32.const 8) (local.get $pn)))
      (local.set $req (call $alloc (i32.add (local.get $key_len) (i32.const 32))))
      (if (i32.eq (local.get $req) (i32.const -1)) (then (return (call $out_of_memory))))
      (global.set $w (local.get $req))
      (call $put_bytes (i32.const 200) (i32.const 5))
      (call $put_str_header (local.get $key_len))
      (call $put_bytes (i32.const 192) (i32.const 8))
      (loop $char
        (if (i32.lt_u (local.get $i) (local.get $pn))
          (then
            (local.set $c (i32.load8_u (i32.add (local.get $pp) (local.get $i))))
            (if (i32.eq (local.get $c) (i32.const 0x2f))              ;; "/"
              (then (local.set $c (i32.const 0x3a))))                   ;; ":"
            (call $put (local.get $c))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $char))))
      (call $put_bytes (i32.const 208) (i32.const 7))

      (local.set $rc (call $host_call
        (i32.const 136) (i32.const 7)                                   ;; binding "default"
        (i32.const 144) (i32.const 18)                                  ;; "wasmcloud:keyvalue"
        (i32.const 168) (i32.const 18)                                  ;; "KeyValue.Increment"
        (local.get $req) (i32.sub (global.get $w) (local.get $req))))

      (if (i32.ne (local.get $rc) (i32.const 1))
        (then
          ;; pass the host's error text on as ours
          (local.set $n (call $host_error_len))
          (local.set $buf (call $alloc (local.get $n)))
          (if (i32.eq (local.get $buf) (i32.const -1)) (then (return (call $out_of_memory))))
          (call $host_error (local.get $buf))
          (call $guest_error (local.get $buf) (local.get $n))
          (return (i32.const 0))))

      (local.set $n (call $host_response_len))
      (local.set $buf (call $alloc (local.get $n)))
      (if (i32.eq (local.get $buf) (i32.const -1)) (then (return (call $out_of_memory))))
      (call $host_response (local.get $buf))
      (call $read_i32 (local.get $buf) (i32.add (local.get $buf) (local.get $n)))
      (local.set $ok) (local.set $value)
      (if (i32.eqz (local.get $ok))
        (then (return (call $fail (local.get $op) (local.get $op_len) (i32.const 400) (i32.const 63)))))

      ;; body JSON {"counter":N}
      (local.set $json (call $alloc (i32.const 32)))
      (if (i32.eq (local.get $json) (i32.const -1)) (then (return (call $out_of_memory))))
      (global.set $w (local.get $json))
      (call $put_bytes (i32.const 248) (i32.const 11))
      (call $put_i64 (local.get $value))
      (call $put (i32.const 0x7d))                                      ;; }
      (local.set $jlen (i32.sub (global.get $w) (local.get $json)))

      (local.set $resp (call $alloc (i32.const 96)))
      (if (i32.eq (local.get $resp) (i32.const -1)) (then (return (call $out_of_memory))))
      (global.set $w (local.get $resp))
      (call $put_bytes (i32.const 216) (i32.const 6))
      (call $put_bin_header (local.get $jlen))
      (call $put_bytes (local.get $json) (local.get $jlen))
      (call $put_bytes (i32.const 224) (i32.const 21))
      (call $guest_response (local.get $resp) (i32.sub (global.get $w) (local.get $resp)))
      (return (i32.const 1)))
    (call $fail (local.get $op) (local.get $op_len) (i32.const 352) (i32.const 44)))

  ;; ---------------------------------------------------------------------------------------
  ;; Entry point
  ;; ---------------------------------------------------------------------------------------

  (func (export "__guest_call") (param $op_len i32) (param $len i32) (result i32)
    (local $op i32) (local $p i32)
    (global.set $heap (global.get $HEAP_BASE))
    (local.set $op (call $alloc (local.get $op_len)))
    (local.set $p (call $alloc (local.get $len)))
    (if (i32.or (i32.eq (local.get $op) (i32.const -1)) (i32.eq (local.get $p) (i32.const -1)))
      (then (return (call $out_of_memory))))
    (call $guest_request (local.get $op) (local.get $p))
    (if (call $streq (local.get $op) (local.get $op_len) (i32.const 64) (i32.const 24))
      (then (return (call $handle_http (local.get $op) (local.get $op_len) (local.get $p) (local.get $len)))))
    (if (call $streq (local.get $op) (local.get $op_len) (i32.const 96) (i32.const 19))
      (then
        (call $guest_response (i32.const 264) (i32.const 10))
        (return (i32.const 1))))
    (call $fail (local.get $op) (local.get $op_len) (i32.const 320) (i32.const 20)))
)
