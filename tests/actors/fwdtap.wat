;; fwdtap.wat: forward.wat plus tap.wat in one actor, for contracts whose provider calls back the
;; actor that made a request (wasmcloud:blobstore streams GetObject as ChunkReceiver.ReceiveChunk
;; calls to the actor that called GetObject).
;;
;;   inbound operation starting with "ChunkReceiver."
;;       -> __host_call("default", "lattice:tap", op, payload), exactly like tap.wat
;;          (the tests' TapProvider records the delivery and answers it)
;;   any other inbound operation -> forward.wat's behaviour (binding "\n" namespace "\n" body,
;;       or "\00" + several length-prefixed calls)
;;
;; Sign it with caps including the forwarded contract and "lattice:tap", and link it to both
;; providers. Never traps.
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

  (data (i32.const 64)  "forward: payload must be binding\\nnamespace\\nbody") ;; 49
  (data (i32.const 128) "forward: out of memory")                               ;; 22
  (data (i32.const 160) "ChunkReceiver.")                                       ;; 14
  (data (i32.const 192) "default")                                              ;; 7
  (data (i32.const 208) "lattice:tap")                                          ;; 11

  (global $HEAP_BASE i32 (i32.const 1024))
  (global $heap (mut i32) (i32.const 1024))

  ;; outcome of the most recent host call
  (global $out_ok (mut i32) (i32.const 0))
  (global $out_ptr (mut i32) (i32.const 0))
  (global $out_len (mut i32) (i32.const 0))

  ;; Bump allocator: a pointer to $n fresh bytes, or -1 when memory cannot grow that far.
  (func $alloc (param $n i32) (result i32)
    (local $ptr i32) (local $end i64) (local $have i64)
    (local.set $ptr (global.get $heap))
    (local.set $end (i64.add (i64.extend_i32_u (local.get $ptr)) (i64.extend_i32_u (local.get $n))))
    (local.set $have (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow (i32.wrap_i64 (i64.shr_u
                (i64.add (i64.sub (local.get $end) (local.get $have)) (i64.const 0xffff))
                (i64.const 16))))
              (i32.const -1))
          (then (return (i32.const -1))))))
    (global.set $heap (i32.wrap_i64 (local.get $end)))
    (local.get $ptr))

  ;; Index of the first byte $b in ($p, $n), or -1.
  (func $find (param $p i32) (param $n i32) (param $b i32) (result i32)
    (local $i i32)
    (loop $each
      (if (i32.lt_u (local.get $i) (local.get $n))
        (then
          (if (i32.eq (i32.load8_u (i32.add (local.get $p) (local.get $i))) (local.get $b))
            (then (return (local.get $i))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $each))))
    (i32.const -1))

  ;; One host call described by ($p, $n) = binding \n namespace \n body, with operation
  ;; ($op, $op_len). Records the outcome in $out_*. Returns 1 (done) or 0 (bad spec / no memory,
  ;; in which case the guest error has already been reported).
  (func $call_one (param $op i32) (param $op_len i32) (param $p i32) (param $n i32) (result i32)
    (local $nl1 i32) (local $ns i32) (local $ns_n i32) (local $nl2 i32) (local $body i32) (local $body_n i32)
    (local $rc i32) (local $len i32) (local $buf i32)
    (local.set $nl1 (call $find (local.get $p) (local.get $n) (i32.const 10)))
    (if (i32.eq (local.get $nl1) (i32.const -1))
      (then (call $guest_error (i32.const 64) (i32.const 49)) (return (i32.const 0))))
    (local.set $ns (i32.add (i32.add (local.get $p) (local.get $nl1)) (i32.const 1)))
    (local.set $ns_n (i32.sub (i32.sub (local.get $n) (local.get $nl1)) (i32.const 1)))
    (local.set $nl2 (call $find (local.get $ns) (local.get $ns_n) (i32.const 10)))
    (if (i32.eq (local.get $nl2) (i32.const -1))
      (then (call $guest_error (i32.const 64) (i32.const 49)) (return (i32.const 0))))
    (local.set $body (i32.add (i32.add (local.get $ns) (local.get $nl2)) (i32.const 1)))
    (local.set $body_n (i32.sub (i32.sub (local.get $ns_n) (local.get $nl2)) (i32.const 1)))

    (local.set $rc (call $host_call
      (local.get $p) (local.get $nl1)                 ;; binding
      (local.get $ns) (local.get $nl2)                ;; namespace
      (local.get $op) (local.get $op_len)             ;; operation = our own operation
      (local.get $body) (local.get $body_n)))

    (global.set $out_ok (i32.eq (local.get $rc) (i32.const 1)))
    (if (global.get $out_ok)
      (then (local.set $len (call $host_response_len)))
      (else (local.set $len (call $host_error_len))))
    (local.set $buf (call $alloc (local.get $len)))
    (if (i32.eq (local.get $buf) (i32.const -1))
      (then (call $guest_error (i32.const 128) (i32.const 22)) (return (i32.const 0))))
    (if (global.get $out_ok)
      (then (call $host_response (local.get $buf)))
      (else (call $host_error (local.get $buf))))
    (global.set $out_ptr (local.get $buf))
    (global.set $out_len (local.get $len))
    (i32.const 1))


  ;; 1 when the operation ($op, $op_len) starts with "ChunkReceiver." (14 bytes at 160).
  (func $is_callback (param $op i32) (param $op_len i32) (result i32)
    (local $i i32)
    (if (i32.lt_u (local.get $op_len) (i32.const 14)) (then (return (i32.const 0))))
    (loop $each
      (if (i32.lt_u (local.get $i) (i32.const 14))
        (then
          (if (i32.ne (i32.load8_u (i32.add (local.get $op) (local.get $i)))
                      (i32.load8_u (i32.add (i32.const 160) (local.get $i))))
            (then (return (i32.const 0))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $each))))
    (i32.const 1))

  ;; tap.wat's relay: the callback goes to ("default", "lattice:tap") with the same op/payload.
  (func $relay (param $op i32) (param $op_len i32) (param $p i32) (param $n i32) (result i32)
    (local $len i32) (local $buf i32) (local $ok i32)
    (local.set $ok (i32.eq (call $host_call
                  (i32.const 192) (i32.const 7) (i32.const 208) (i32.const 11)
                  (local.get $op) (local.get $op_len) (local.get $p) (local.get $n))
                (i32.const 1)))
    (if (local.get $ok)
      (then (local.set $len (call $host_response_len)))
      (else (local.set $len (call $host_error_len))))
    (local.set $buf (call $alloc (local.get $len)))
    (if (i32.eq (local.get $buf) (i32.const -1))
      (then (call $guest_error (i32.const 128) (i32.const 22)) (return (i32.const 0))))
    (if (local.get $ok)
      (then
        (call $host_response (local.get $buf))
        (call $guest_response (local.get $buf) (local.get $len))
        (return (i32.const 1))))
    (call $host_error (local.get $buf))
    (call $guest_error (local.get $buf) (local.get $len))
    (i32.const 0))

  (func (export "__guest_call") (param $op_len i32) (param $len i32) (result i32)
    (local $op i32) (local $p i32) (local $pos i32) (local $end i32) (local $n i32)
    (global.set $heap (global.get $HEAP_BASE))
    (local.set $op (call $alloc (local.get $op_len)))
    (local.set $p (call $alloc (local.get $len)))
    (if (i32.or (i32.eq (local.get $op) (i32.const -1)) (i32.eq (local.get $p) (i32.const -1)))
      (then (call $guest_error (i32.const 128) (i32.const 22)) (return (i32.const 0))))
    (call $guest_request (local.get $op) (local.get $p))
    (if (call $is_callback (local.get $op) (local.get $op_len))
      (then (return (call $relay (local.get $op) (local.get $op_len) (local.get $p) (local.get $len)))))

    (if (i32.and (i32.gt_u (local.get $len) (i32.const 0)) (i32.eqz (i32.load8_u (local.get $p))))
      (then
        ;; several calls: "\00" (u32le length, spec)*
        (local.set $end (i32.add (local.get $p) (local.get $len)))
        (local.set $pos (i32.add (local.get $p) (i32.const 1)))
        (if (i32.ge_u (local.get $pos) (local.get $end))
          (then (call $guest_error (i32.const 64) (i32.const 49)) (return (i32.const 0))))
        (loop $spec
          (if (i32.lt_u (local.get $pos) (local.get $end))
            (then
              (if (i32.lt_u (i32.sub (local.get $end) (local.get $pos)) (i32.const 4))
                (then (call $guest_error (i32.const 64) (i32.const 49)) (return (i32.const 0))))
              (local.set $n (i32.load (local.get $pos)))
              (local.set $pos (i32.add (local.get $pos) (i32.const 4)))
              (if (i32.gt_u (local.get $n) (i32.sub (local.get $end) (local.get $pos)))
                (then (call $guest_error (i32.const 64) (i32.const 49)) (return (i32.const 0))))
              (if (i32.eqz (call $call_one (local.get $op) (local.get $op_len) (local.get $pos) (local.get $n)))
                (then (return (i32.const 0))))
              (local.set $pos (i32.add (local.get $pos) (local.get $n)))
              (br $spec)))))
      (else
        (if (i32.eqz (call $call_one (local.get $op) (local.get $op_len) (local.get $p) (local.get $len)))
          (then (return (i32.const 0))))))

    (if (global.get $out_ok)
      (then
        (call $guest_response (global.get $out_ptr) (global.get $out_len))
        (return (i32.const 1))))
    (call $guest_error (global.get $out_ptr) (global.get $out_len))
    (i32.const 0))
)
