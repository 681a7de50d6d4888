;; echo.wat: the Lattice demo actor, written by hand against the wasmbus ABI (docs/wire.md §1).
;;
;; It answers exactly like the wasmCloud 0.x `echo` example actor (vector `echo` in
;; wasmbus-recorded.json):
;;
;;   HttpServer.HandleRequest  HttpRequest -> HttpResponse {statusCode: 200, header: {}, body}
;;                             where body is the JSON text
;;                             {"body":[104,101,...],"method":"GET","path":"/foo","query_string":"a=1"}
;;                             (keys sorted, request body bytes written as decimal numbers,
;;                             strings escaped like serde_json does)
;;   Actor.HealthRequest       -> HealthCheckResponse {healthy: true}
;;   any other operation       -> guest error "Guest call failed for method {op}: method not handled"
;;
;; Malformed input (not a msgpack map, truncated values, non-string keys, invalid UTF-8 in a
;; string field...) never traps: it is answered with a guest error and __guest_call returns 0.
;;
;; Memory layout: constants live below HEAP_BASE (1024); every guest call starts a fresh bump
;; heap at HEAP_BASE that grows the linear memory as needed. Nothing survives between calls.
(module
  (import "wasmbus" "__guest_request"  (func $guest_request  (param i32 i32)))
  (import "wasmbus" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wasmbus" "__guest_error"    (func $guest_error    (param i32 i32)))

  (memory (export "memory") 1)

  ;; ---------------------------------------------------------------------------------------
  ;; Constants (offset ;; length)
  ;; ---------------------------------------------------------------------------------------
  (data (i32.const 64)  "HttpServer.HandleRequest")                 ;; 24
  (data (i32.const 96)  "Actor.HealthRequest")                      ;; 19
  (data (i32.const 128) "method")                                   ;; 6
  (data (i32.const 136) "path")                                     ;; 4
  (data (i32.const 144) "queryString")                              ;; 11
  (data (i32.const 160) "body")                                     ;; 4
  ;; HttpResponse as rmp_serde writes it: {statusCode: 200, header: {}, body: <bin follows>}
  (data (i32.const 176) "\83\aastatusCode\cc\c8\a6header\80\a4body") ;; 27
  ;; HealthCheckResponse {healthy: true}
  (data (i32.const 208) "\81\a7healthy\c3")                         ;; 10
  (data (i32.const 224) "Guest call failed for method ")            ;; 29
  (data (i32.const 256) ": method not handled")                     ;; 20
  (data (i32.const 288) ": deserialization error: invalid HttpRequest") ;; 44
  (data (i32.const 352) "Guest call failed: out of memory")         ;; 32
  ;; JSON fragments of the response body
  (data (i32.const 384) "{\"body\":[")                              ;; 9
  (data (i32.const 400) "],\"method\":\"")                          ;; 12
  (data (i32.const 416) "\",\"path\":\"")                           ;; 10
  (data (i32.const 432) "\",\"query_string\":\"")                   ;; 18
  (data (i32.const 464) "\"}")                                      ;; 2
  (data (i32.const 480) "0123456789abcdef")                         ;; 16 (hex digits)

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

  ;; Present in real wasmbus-rpc actors; the host does not need it.
  (func (export "__wasmbus_rpc_version") (result i32) (i32.const 1))

  ;; ---------------------------------------------------------------------------------------
  ;; Memory helpers
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

  ;; Unsigned decimal: digits are written least significant first, then reversed in place.
  (func $put_dec (param $n i32)
    (local $i i32) (local $j i32) (local $t i32)
    (local.set $i (global.get $w))
    (loop $digit
      (call $put (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $n)))
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

  ;; A JSON string body (without quotes), escaped the way serde_json does: \" \\ \b \t \n \f \r,
  ;; other control characters as \u00XX, everything else (including UTF-8) verbatim.
  (func $put_json_str (param $p i32) (param $n i32)
    (local $i i32) (local $c i32)
    (loop $each
      (if (i32.lt_u (local.get $i) (local.get $n))
        (then
          (local.set $c (i32.load8_u (i32.add (local.get $p) (local.get $i))))
          (if (i32.or (i32.eq (local.get $c) (i32.const 0x22)) (i32.eq (local.get $c) (i32.const 0x5c)))
            (then (call $put (i32.const 0x5c)) (call $put (local.get $c)))
            (else (if (i32.lt_u (local.get $c) (i32.const 0x20))
              (then
                (call $put (i32.const 0x5c))
                (if (i32.eq (local.get $c) (i32.const 0x08)) (then (call $put (i32.const 0x62)))   ;; b
                (else (if (i32.eq (local.get $c) (i32.const 0x09)) (then (call $put (i32.const 0x74)))   ;; t
                (else (if (i32.eq (local.get $c) (i32.const 0x0a)) (then (call $put (i32.const 0x6e)))   ;; n
                (else (if (i32.eq (local.get $c) (i32.const 0x0c)) (then (call $put (i32.const 0x66)))   ;; f
                (else (if (i32.eq (local.get $c) (i32.const 0x0d)) (then (call $put (i32.const 0x72)))   ;; r
                (else
                  (call $put (i32.const 0x75))   ;; u00XX
                  (call $put (i32.const 0x30))
                  (call $put (i32.const 0x30))
                  (call $put (i32.load8_u (i32.add (i32.const 480) (i32.shr_u (local.get $c) (i32.const 4)))))
                  (call $put (i32.load8_u (i32.add (i32.const 480) (i32.and (local.get $c) (i32.const 15))))))))))))))))
              (else (call $put (local.get $c))))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $each)))))

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

  ;; ---------------------------------------------------------------------------------------
  ;; Errors
  ;; ---------------------------------------------------------------------------------------

  ;; Report "Guest call failed for method {op}{reason}" and return 0 (the __guest_call result).
  (func $fail (param $op i32) (param $op_len i32) (param $reason i32) (param $reason_len i32) (result i32)
    (local $msg i32)
    (local.set $msg (call $alloc (i32.add (i32.add (i32.const 29) (local.get $op_len)) (local.get $reason_len))))
    (if (i32.eq (local.get $msg) (i32.const -1))
      (then
        (call $guest_error (i32.const 352) (i32.const 32))
        (return (i32.const 0))))
    (global.set $w (local.get $msg))
    (call $put_bytes (i32.const 224) (i32.const 29))
    (call $put_bytes (local.get $op) (local.get $op_len))
    (call $put_bytes (local.get $reason) (local.get $reason_len))
    (call $guest_error (local.get $msg) (i32.sub (global.get $w) (local.get $msg)))
    (i32.const 0))

  ;; ---------------------------------------------------------------------------------------
  ;; HttpServer.HandleRequest
  ;; ---------------------------------------------------------------------------------------

  (func $handle_http (param $op i32) (param $op_len i32) (param $p i32) (param $len i32) (result i32)
    (local $end i32) (local $pos i32) (local $pairs i32) (local $kind i32) (local $size i32)
    (local $kp i32) (local $kn i32)
    (local $mp i32) (local $mn i32)     ;; method
    (local $pp i32) (local $pn i32)     ;; path
    (local $qp i32) (local $qn i32)     ;; queryString
    (local $bp i32) (local $bn i32)     ;; body
    (local $bound i64) (local $json i32) (local $jlen i32) (local $resp i32) (local $i i32)
    (local.set $end (i32.add (local.get $p) (local.get $len)))
    (block $bad
      ;; the request must be a map; missing fields default to empty, unknown ones are skipped
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
            (if (call $streq (local.get $kp) (local.get $kn) (i32.const 128) (i32.const 6))
              (then
                (call $read_blob (local.get $pos) (local.get $end) (i32.const 1))
                (local.set $pos) (local.set $mn) (local.set $mp))
            (else (if (call $streq (local.get $kp) (local.get $kn) (i32.const 136) (i32.const 4))
              (then
                (call $read_blob (local.get $pos) (local.get $end) (i32.const 1))
                (local.set $pos) (local.set $pn) (local.set $pp))
            (else (if (call $streq (local.get $kp) (local.get $kn) (i32.const 144) (i32.const 11))
              (then
                (call $read_blob (local.get $pos) (local.get $end) (i32.const 1))
                (local.set $pos) (local.set $qn) (local.set $qp))
            (else (if (call $streq (local.get $kp) (local.get $kn) (i32.const 160) (i32.const 4))
              (then
                (call $read_blob (local.get $pos) (local.get $end) (i32.const 1))
                (local.set $pos) (local.set $bn) (local.set $bp))
            (else
              (local.set $pos (call $skip (local.get $pos) (local.get $end)))))))))))
            (br_if $bad (i32.eq (local.get $pos) (i32.const -1)))
            (local.set $pairs (i32.sub (local.get $pairs) (i32.const 1)))
            (br $field))))
      ;; String fields must be text (a Rust String cannot hold anything else).
      (br_if $bad (i32.eqz (call $utf8_ok (local.get $mp) (local.get $mn))))
      (br_if $bad (i32.eqz (call $utf8_ok (local.get $pp) (local.get $pn))))
      (br_if $bad (i32.eqz (call $utf8_ok (local.get $qp) (local.get $qn))))

      ;; JSON body. Worst case: 51 bytes of fragments, 6 bytes per escaped string byte
      ;; (\u00XX), 4 per body byte ("255,").
      (local.set $bound
        (i64.add (i64.const 64)
          (i64.add
            (i64.mul (i64.const 6)
              (i64.add (i64.extend_i32_u (local.get $mn))
                (i64.add (i64.extend_i32_u (local.get $pn)) (i64.extend_i32_u (local.get $qn)))))
            (i64.mul (i64.const 4) (i64.extend_i32_u (local.get $bn))))))
      (br_if $bad (i64.gt_u (local.get $bound) (i64.const 0x40000000)))
      (local.set $json (call $alloc (i32.wrap_i64 (local.get $bound))))
      (if (i32.eq (local.get $json) (i32.const -1))
        (then (call $guest_error (i32.const 352) (i32.const 32)) (return (i32.const 0))))
      (global.set $w (local.get $json))
      (call $put_bytes (i32.const 384) (i32.const 9))       ;; {"body":[
      (local.set $i (i32.const 0))
      (loop $byte
        (if (i32.lt_u (local.get $i) (local.get $bn))
          (then
            (if (local.get $i) (then (call $put (i32.const 0x2c))))   ;; ,
            (call $put_dec (i32.load8_u (i32.add (local.get $bp) (local.get $i))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $byte))))
      (call $put_bytes (i32.const 400) (i32.const 12))      ;; ],"method":"
      (call $put_json_str (local.get $mp) (local.get $mn))
      (call $put_bytes (i32.const 416) (i32.const 10))      ;; ","path":"
      (call $put_json_str (local.get $pp) (local.get $pn))
      (call $put_bytes (i32.const 432) (i32.const 18))      ;; ","query_string":"
      (call $put_json_str (local.get $qp) (local.get $qn))
      (call $put_bytes (i32.const 464) (i32.const 2))       ;; "}
      (local.set $jlen (i32.sub (global.get $w) (local.get $json)))

      ;; HttpResponse: constant prefix, bin header, JSON
      (local.set $resp (call $alloc (i32.add (local.get $jlen) (i32.const 32))))
      (if (i32.eq (local.get $resp) (i32.const -1))
        (then (call $guest_error (i32.const 352) (i32.const 32)) (return (i32.const 0))))
      (global.set $w (local.get $resp))
      (call $put_bytes (i32.const 176) (i32.const 27))
      (call $put_bin_header (local.get $jlen))
      (call $put_bytes (local.get $json) (local.get $jlen))
      (call $guest_response (local.get $resp) (i32.sub (global.get $w) (local.get $resp)))
      (return (i32.const 1)))
    (call $fail (local.get $op) (local.get $op_len) (i32.const 288) (i32.const 44)))

  ;; ---------------------------------------------------------------------------------------
  ;; Entry point
  ;; ---------------------------------------------------------------------------------------

  (func (export "__guest_call") (param $op_len i32) (param $len i32) (result i32)
    (local $op i32) (local $p i32)
    (global.set $heap (global.get $HEAP_BASE))
    (local.set $op (call $alloc (local.get $op_len)))
    (local.set $p (call $alloc (local.get $len)))
    (if (i32.or (i32.eq (local.get $op) (i32.const -1)) (i32.eq (local.get $p) (i32.const -1)))
      (then (call $guest_error (i32.const 352) (i32.const 32)) (return (i32.const 0))))
    (call $guest_request (local.get $op) (local.get $p))
    (if (call $streq (local.get $op) (local.get $op_len) (i32.const 64) (i32.const 24))
      (then (return (call $handle_http (local.get $op) (local.get $op_len) (local.get $p) (local.get $len)))))
    (if (call $streq (local.get $op) (local.get $op_len) (i32.const 96) (i32.const 19))
      (then
        (call $guest_response (i32.const 208) (i32.const 10))
        (return (i32.const 1))))
    (call $fail (local.get $op) (local.get $op_len) (i32.const 256) (i32.const 20)))
)
