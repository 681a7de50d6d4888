;; misuse.wat: breaks the wasmbus ABI on purpose, one way per operation, so tests can check
;; that every misuse fails only its own call (GuestCallError), never the host process, and
;; that the actor keeps serving afterwards.
;;
;; The operation name can only be read through __guest_request, so the two misuses OF
;; __guest_request are chosen by the operation's LENGTH, before anything is read:
;;   GuestRequestOOB     (15 chars)  payload pointer past the end of memory
;;   GuestRequestOpOOB   (17 chars)  operation pointer past the end of memory
;; (no other operation below is 15 or 17 characters long). The rest are chosen by name:
;;   Ping                     -> "pong" (proves the actor still serves)
;;   ResponseHugeLength       __guest_response(0, 0x7fffffff)
;;   ResponseOutOfBounds      __guest_response(<4 bytes before the end>, 16)
;;   ErrorHugeLen             __guest_error(0, 0x7fffffff), return 0
;;   NegativeLen              __guest_response(1024, -1)
;;   ErrorInvalidUtf8         __guest_error(<bytes ff fe 80 "bad">), return 0
;;   HostCallBadPtr           __host_call with a namespace pointer past the end of memory
;;   HostCallHugeLength       __host_call with payload length 0x7fffffff
;;   HostResponseNoCall       __host_response(1024) with no host call made in this guest call
;;   HostErrorWithoutCall     __host_error(1024) with no host call made in this guest call
;;   HostResponseOutOfBounds  a host call (binding "default", namespace "misuse:test",
;;                            operation "Misuse.Call"), then __host_response(<past the end>)
;;                            (meaningful when the host call succeeds with a non-empty result)
;;   ConsoleLogOutOfBounds    __console_log(<past the end>, 64)
;;   DoubleRequest            a second __guest_request in the same call
;;   ReturnTwo                responds "x", returns 2 from __guest_call
;;   ReturnNegative           responds "x", returns -1 from __guest_call
;;   NoResponse               returns 1 without calling __guest_response (result: empty)
;; When a misuse call comes back without failing, the actor answers "tolerated: {op}" and
;; returns 1, so a test shows precisely which misuse the host let through.
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
  (import "wasmbus" "__console_log"       (func $console_log       (param i32 i32)))

  (memory (export "memory") 1)

  ;; operation names (offset ;; length)
  (data (i32.const 16)  "Ping")                       ;; 4
  (data (i32.const 32)  "ResponseHugeLength")         ;; 18
  (data (i32.const 64)  "ResponseOutOfBounds")        ;; 19
  (data (i32.const 96)  "ErrorHugeLen")               ;; 12
  (data (i32.const 112) "NegativeLen")                ;; 11
  (data (i32.const 128) "ErrorInvalidUtf8")           ;; 16
  (data (i32.const 160) "HostCallBadPtr")             ;; 14
  (data (i32.const 176) "HostCallHugeLength")         ;; 18
  (data (i32.const 208) "HostResponseNoCall")         ;; 18
  (data (i32.const 240) "HostErrorWithoutCall")       ;; 20
  (data (i32.const 272) "HostResponseOutOfBounds")    ;; 23
  (data (i32.const 304) "ConsoleLogOutOfBounds")      ;; 21
  (data (i32.const 336) "DoubleRequest")              ;; 13
  (data (i32.const 352) "ReturnTwo")                  ;; 9
  (data (i32.const 368) "ReturnNegative")             ;; 14
  (data (i32.const 384) "NoResponse")                 ;; 10
  ;; other constants
  (data (i32.const 400) "pong")                       ;; 4
  (data (i32.const 408) "\ff\fe\80bad")               ;; 6
  (data (i32.const 416) "default")                    ;; 7
  (data (i32.const 424) "misuse:test")                ;; 11
  (data (i32.const 440) "Misuse.Call")                ;; 11
  (data (i32.const 456) "tolerated: ")                ;; 11
  (data (i32.const 472) "unknown operation")          ;; 17
  ;; the request is read to 1024 (operation) and right after it (payload); the
  ;; "tolerated: {op}" answer is built at 512

  (global $op_len (mut i32) (i32.const 0))

  ;; One past the last valid address.
  (func $mem_end (result i32)
    (i32.shl (memory.size) (i32.const 16)))

  (func $is (param $c i32) (param $cn i32) (result i32)
    (local $i i32)
    (if (i32.ne (global.get $op_len) (local.get $cn)) (then (return (i32.const 0))))
    (loop $each
      (if (i32.lt_u (local.get $i) (local.get $cn))
        (then
          (if (i32.ne (i32.load8_u (i32.add (i32.const 1024) (local.get $i)))
                      (i32.load8_u (i32.add (local.get $c) (local.get $i))))
            (then (return (i32.const 0))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $each))))
    (i32.const 1))

  ;; The misuse did not fail: answer "tolerated: {op}" (op is at 1024) and succeed.
  (func $tolerated (result i32)
    (memory.copy (i32.const 512) (i32.const 456) (i32.const 11))
    (memory.copy (i32.const 523) (i32.const 1024) (global.get $op_len))
    (call $guest_response (i32.const 512) (i32.add (i32.const 11) (global.get $op_len)))
    (i32.const 1))

  (func (export "__guest_call") (param $op_len i32) (param $len i32) (result i32)
    (local $need i64)
    (global.set $op_len (local.get $op_len))

    ;; misuses of __guest_request itself, chosen by operation length
    (if (i32.eq (local.get $op_len) (i32.const 15))
      (then
        (call $guest_request (i32.const 1024) (i32.sub (call $mem_end) (i32.const 2)))
        (return (call $tolerated))))
    (if (i32.eq (local.get $op_len) (i32.const 17))
      (then
        (call $guest_request (i32.sub (call $mem_end) (i32.const 2)) (i32.const 1024))
        (return (call $tolerated))))

    ;; read the request normally (operation at 1024, payload after it)
    (local.set $need (i64.add (i64.const 1024)
      (i64.add (i64.extend_i32_u (local.get $op_len)) (i64.extend_i32_u (local.get $len)))))
    (if (i64.gt_u (local.get $need) (i64.const 65536))
      (then (return (i32.const 0))))   ;; this test actor only takes small requests
    (call $guest_request (i32.const 1024) (i32.add (i32.const 1024) (local.get $op_len)))

    (if (call $is (i32.const 16) (i32.const 4))
      (then (call $guest_response (i32.const 400) (i32.const 4)) (return (i32.const 1))))
    (if (call $is (i32.const 32) (i32.const 18))
      (then (call $guest_response (i32.const 0) (i32.const 0x7fffffff)) (return (call $tolerated))))
    (if (call $is (i32.const 64) (i32.const 19))
      (then
        (call $guest_response (i32.sub (call $mem_end) (i32.const 4)) (i32.const 16))
        (return (call $tolerated))))
    (if (call $is (i32.const 96) (i32.const 12))
      (then (call $guest_error (i32.const 0) (i32.const 0x7fffffff)) (return (i32.const 0))))
    (if (call $is (i32.const 112) (i32.const 11))
      (then (call $guest_response (i32.const 1024) (i32.const -1)) (return (call $tolerated))))
    (if (call $is (i32.const 128) (i32.const 16))
      (then (call $guest_error (i32.const 408) (i32.const 6)) (return (i32.const 0))))
    (if (call $is (i32.const 160) (i32.const 14))
      (then
        (drop (call $host_call
          (i32.const 416) (i32.const 7)
          (i32.sub (call $mem_end) (i32.const 3)) (i32.const 11)
          (i32.const 440) (i32.const 11)
          (i32.const 0) (i32.const 0)))
        (return (call $tolerated))))
    (if (call $is (i32.const 176) (i32.const 18))
      (then
        (drop (call $host_call
          (i32.const 416) (i32.const 7)
          (i32.const 424) (i32.const 11)
          (i32.const 440) (i32.const 11)
          (i32.const 0) (i32.const 0x7fffffff)))
        (return (call $tolerated))))
    (if (call $is (i32.const 208) (i32.const 18))
      (then (call $host_response (i32.const 1024)) (return (call $tolerated))))
    (if (call $is (i32.const 240) (i32.const 20))
      (then (call $host_error (i32.const 1024)) (return (call $tolerated))))
    (if (call $is (i32.const 272) (i32.const 23))
      (then
        (drop (call $host_call
          (i32.const 416) (i32.const 7)
          (i32.const 424) (i32.const 11)
          (i32.const 440) (i32.const 11)
          (i32.const 0) (i32.const 0)))
        (call $host_response (i32.sub (call $mem_end) (i32.const 2)))
        (return (call $tolerated))))
    (if (call $is (i32.const 304) (i32.const 21))
      (then
        (call $console_log (i32.sub (call $mem_end) (i32.const 2)) (i32.const 64))
        (return (call $tolerated))))
    (if (call $is (i32.const 336) (i32.const 13))
      (then
        (call $guest_request (i32.const 1024) (i32.add (i32.const 1024) (local.get $op_len)))
        (return (call $tolerated))))
    (if (call $is (i32.const 352) (i32.const 9))
      (then (call $guest_response (i32.const 456) (i32.const 1)) (return (i32.const 2))))
    (if (call $is (i32.const 368) (i32.const 14))
      (then (call $guest_response (i32.const 456) (i32.const 1)) (return (i32.const -1))))
    (if (call $is (i32.const 384) (i32.const 10))
      (then (return (i32.const 1))))
    (call $guest_error (i32.const 472) (i32.const 17))
    (i32.const 0))
)
