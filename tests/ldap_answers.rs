//! SPEC 1.5: whatever a directory answers is that login's error, never the
//! process's end. A scripted LDAP server of the test's own (BER written by
//! hand: slapd never sends a malformed entry) answers binds, then a search
//! with the entry the case names; the gateway answers each login with the
//! documented code and goes on answering the next.

use ferrygate_testkit as common;

use std::net::SocketAddr;

use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One BER element: tag, definite length (short or long form), content.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn octets(s: &[u8]) -> Vec<u8> {
    tlv(0x04, s)
}

/// An LDAPMessage: the id, then the operation.
fn message(id: &[u8], op: Vec<u8>) -> Vec<u8> {
    let mut content = tlv(0x02, id);
    content.extend(op);
    tlv(0x30, &content)
}

/// LDAPResult success, under `tag` (BindResponse 0x61, SearchResultDone 0x65).
fn success(tag: u8) -> Vec<u8> {
    let mut content = tlv(0x0a, &[0]);
    content.extend(octets(b""));
    content.extend(octets(b""));
    tlv(tag, &content)
}

fn attribute(name: &str, values: &[&[u8]]) -> Vec<u8> {
    let mut content = octets(name.as_bytes());
    content.extend(tlv(0x31, &values.iter().flat_map(|v| octets(v)).collect::<Vec<u8>>()));
    tlv(0x30, &content)
}

/// A SearchResultEntry from its DN (as bytes) and its attribute list, if any.
fn entry(dn: &[u8], attributes: Option<Vec<Vec<u8>>>) -> Vec<u8> {
    let mut content = octets(dn);
    if let Some(list) = attributes {
        content.extend(tlv(0x30, &list.concat()));
    }
    tlv(0x64, &content)
}

#[derive(Clone, Copy, Debug)]
enum Case {
    Good,
    NonUtf8Dn,
    NoAttributeList,
    OversizedMail,
    SilentStartTls,
}

/// Reads one LDAPMessage: its id's bytes and its operation's tag.
async fn read_message(tcp: &mut tokio::net::TcpStream) -> Option<(Vec<u8>, u8)> {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await.ok()?;
    let len = if head[1] < 0x80 {
        head[1] as usize
    } else {
        let mut bytes = vec![0u8; (head[1] & 0x7f) as usize];
        tcp.read_exact(&mut bytes).await.ok()?;
        bytes.iter().fold(0usize, |n, b| n << 8 | *b as usize)
    };
    let mut body = vec![0u8; len];
    tcp.read_exact(&mut body).await.ok()?;
    let id_len = body[1] as usize;
    Some((body[2..2 + id_len].to_vec(), body[2 + id_len]))
}

async fn directory(case: Case) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                while let Some((id, op)) = read_message(&mut tcp).await {
                    let answer = match op {
                        0x60 => message(&id, success(0x61)),
                        0x63 => {
                            let found = match case {
                                Case::Good | Case::SilentStartTls => entry(
                                    b"uid=u,dc=x",
                                    Some(vec![attribute("mail", &[b"u@corp.example"]), attribute("uid", &[b"u"])]),
                                ),
                                Case::NonUtf8Dn => entry(b"uid=\xff\xfe,dc=x", Some(vec![attribute("uid", &[b"u"])])),
                                Case::NoAttributeList => entry(b"uid=u,dc=x", None),
                                Case::OversizedMail => {
                                    let huge = vec![b'm'; 100 * 1024];
                                    entry(b"uid=u,dc=x", Some(vec![attribute("mail", &[&huge])]))
                                }
                            };
                            let mut both = message(&id, found);
                            both.extend(message(&id, success(0x65)));
                            both
                        }
                        // StartTLS (an extended request): never answered.
                        0x77 => continue,
                        _ => return, // unbind
                    };
                    if tcp.write_all(&answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn gateway_for(case: Case) -> Gateway {
    let addr = directory(case).await;
    let start_tls = matches!(case, Case::SilentStartTls);
    let table = format!(
        "kind = \"ldap\"\nurl = \"ldap://{addr}\"\nallow_insecure = true\nstart_tls = {start_tls}\n\
         bind_dn = \"cn=svc,dc=x\"\nbind_password = \"svc-pw\"\nbase_dn = \"dc=x\"\n\
         user_filter = \"(uid={{username}})\"\ntimeout = \"500ms\""
    );
    gateway(&staff_config("", "", &table, echo_upstream().await)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatever_a_directory_answers_is_that_logins_error() {
    for (case, status, code) in [
        (Case::Good, StatusCode::OK, None),
        (Case::NonUtf8Dn, StatusCode::BAD_GATEWAY, Some("provider_unavailable")),
        (Case::NoAttributeList, StatusCode::BAD_GATEWAY, Some("provider_unavailable")),
        (Case::OversizedMail, StatusCode::BAD_GATEWAY, Some("provider_unavailable")),
        (Case::SilentStartTls, StatusCode::GATEWAY_TIMEOUT, Some("provider_timeout")),
    ] {
        let gw = gateway_for(case).await;
        // Twice: the gateway is still there after the first.
        for round in 0..2 {
            let res = post_json(&gw.url("/login"), serde_json::json!({"email": "u", "password": "pw"})).await;
            assert_eq!(res.status, status, "{case:?} round {round}: {}", res.text());
            assert_eq!(res.json()["error"].as_str(), code, "{case:?}");
        }
    }
}
