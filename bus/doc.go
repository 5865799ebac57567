// Package bus carries CloudEvents over NATS for Plugbus.
//
// It holds the parts every Plugbus process shares:
//
//   - the subject scheme, P.events.<producer>.<type> for events and
//     P.invoke.<caller>.<type> for requests, built and parsed in one place
//     ([EventSubject], [ParseEventSubject], [TypeSubject], [InvokeSubject],
//     [ParseInvokeSubject], [AnswerSubject]);
//   - the CloudEvents NATS protocol binding: binary content mode written with
//     lower-case ce- headers, binary and structured content mode read
//     ([Encode], [Decode], [Message]);
//   - a strict validator for events ([Validate]);
//   - request/reply on the invoke subjects with NATS micro error headers
//     ([Request], [AnsweredBy], [HeaderPlugin], [ServiceError]);
//   - connecting to NATS with retries and reconnects that never give up
//     ([Connect]) and an embedded nats-server (package embedded).
//
// The package reports problems through return values and callbacks; it never
// logs on its own.
package bus
