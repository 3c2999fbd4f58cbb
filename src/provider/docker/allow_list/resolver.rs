//! The DNS resolver of ALLOW_LIST sandboxes: it answers their queries for
//! allowed names (and refuses every other), from the upstream servers, and
//! opens each address it answers with to the sandbox that asked before the
//! answer leaves.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tracing::{debug, warn};

use super::rules::chain_name;
use super::state::{MAX_LEARNED, Shared, UPSTREAM_TIMEOUT};

/// The most addresses one answer holds.
const MAX_ANSWERS: usize = 16;
use crate::provider::docker::egress::{nameservers, restore_rules};

/// Starts the resolver on `gateway`, UDP and TCP on one port; that port.
pub(super) async fn start(
    shared: Weak<Shared>,
    gateway: Ipv4Addr,
) -> std::result::Result<u16, String> {
    // The kernel picks a free UDP port; the TCP port must match, so try
    // again in the rare case it is taken for TCP.
    for _ in 0..16 {
        let udp = UdpSocket::bind(SocketAddrV4::new(gateway, 0))
            .await
            .map_err(|e| format!("cannot listen for DNS on {gateway}: {e}"))?;
        let port = udp.local_addr().map_err(|e| e.to_string())?.port();
        let Ok(tcp) = TcpListener::bind(SocketAddrV4::new(gateway, port)).await else {
            continue;
        };
        tokio::spawn(serve_udp(shared.clone(), Arc::new(udp)));
        tokio::spawn(serve_tcp(shared, tcp));
        return Ok(port);
    }
    Err(format!(
        "cannot find a port free for both UDP and TCP DNS on {gateway}"
    ))
}

async fn serve_udp(shared: Weak<Shared>, socket: Arc<UdpSocket>) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let Ok((length, from)) = socket.recv_from(&mut buffer).await else {
            // Not expected on a bound UDP socket; do not spin if it repeats.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Some(this) = shared.upgrade() else {
            return;
        };
        let SocketAddr::V4(from) = from else {
            continue;
        };
        let Ok(permit) = Arc::clone(&this.queries).try_acquire_owned() else {
            debug!(%from, "dropping a DNS query: too many in flight");
            continue;
        };
        let query = buffer[..length].to_vec();
        let socket = Arc::clone(&socket);
        tokio::spawn(async move {
            if let Some(answer) = this.answer(*from.ip(), &query).await {
                let _ = socket.send_to(&answer, from).await;
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(shared: Weak<Shared>, listener: TcpListener) {
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            // Out of file descriptors, say: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Some(this) = shared.upgrade() else {
            return;
        };
        let SocketAddr::V4(from) = from else {
            continue;
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                Duration::from_secs(30),
                this.serve_stream(*from.ip(), stream),
            )
            .await;
        });
    }
}

impl Shared {
    /// Answers the DNS queries of one TCP connection, each prefixed by its
    /// length (RFC 1035 4.2.2), until the client closes it.
    async fn serve_stream(&self, from: Ipv4Addr, mut stream: TcpStream) -> std::io::Result<()> {
        loop {
            let length = match stream.read_u16().await {
                Ok(length) => usize::from(length),
                Err(_) => return Ok(()),
            };
            let mut query = vec![0u8; length];
            stream.read_exact(&mut query).await?;
            let Some(answer) = self.answer(from, &query).await else {
                return Ok(());
            };
            let length = u16::try_from(answer.len()).unwrap_or(u16::MAX);
            stream.write_u16(length).await?;
            stream.write_all(&answer).await?;
        }
    }

    /// The answer to the DNS message `query` sent from `from`; `None` for
    /// something not worth an answer (not a query at all).
    async fn answer(&self, from: Ipv4Addr, query: &[u8]) -> Option<Vec<u8>> {
        let request = Message::from_vec(query).ok()?;
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.add_queries(request.queries.clone());
        let code = self.resolve(from, &request, &mut response).await;
        response.metadata.response_code = code;
        response.to_vec().ok()
    }

    /// Fills in `response`'s answers to `request` from the sandbox at
    /// `from`; the response code.
    async fn resolve(
        &self,
        from: Ipv4Addr,
        request: &Message,
        response: &mut Message,
    ) -> ResponseCode {
        if request.metadata.op_code != OpCode::Query {
            return ResponseCode::NotImp;
        }
        let [question] = request.queries.as_slice() else {
            return ResponseCode::FormErr;
        };
        let Some(hosts) = self
            .admitted
            .lock()
            .expect("admitted sandboxes")
            .get(&from)
            .map(|entry| entry.hosts.clone())
        else {
            // Not a sandbox this server admitted.
            return ResponseCode::Refused;
        };
        let name = question.name().to_ascii();
        if question.query_class() != DNSClass::IN
            || !hosts.iter().any(|host| host.allows_name(&name))
        {
            debug!(%from, name, "refused a DNS query for a name not allowed");
            return ResponseCode::Refused;
        }
        if question.query_type() != RecordType::A {
            // Allowed, but only IPv4 addresses are reachable: an empty answer.
            return ResponseCode::NoError;
        }
        let (code, records) = match self.upstream_lookup(question.name()).await {
            Ok(found) => found,
            Err(why) => {
                warn!(name, %why, "resolving an allowed name failed");
                return ResponseCode::ServFail;
            }
        };
        let reachable: Vec<(Ipv4Addr, u32)> = records
            .into_iter()
            .filter(|(address, _)| !self.blocked.iter().any(|range| range.contains(*address)))
            // Few enough for any answer to fit a plain 512-byte UDP message.
            .take(MAX_ANSWERS)
            .collect();
        if let Err(why) = self
            .learn(from, reachable.iter().map(|(address, _)| *address))
            .await
        {
            warn!(%from, name, %why, "cannot open the addresses of an allowed name");
            return ResponseCode::ServFail;
        }
        for (address, ttl) in reachable {
            response.add_answer(Record::from_rdata(
                question.name().clone(),
                ttl,
                RData::A(address.into()),
            ));
        }
        code
    }

    /// Opens `addresses` to the sandbox at `from` before they are answered.
    async fn learn(
        &self,
        from: Ipv4Addr,
        addresses: impl Iterator<Item = Ipv4Addr>,
    ) -> std::result::Result<(), String> {
        let new: Vec<Ipv4Addr> = {
            let mut admitted = self.admitted.lock().expect("admitted sandboxes");
            let entry = admitted.get_mut(&from).ok_or("the sandbox is gone")?;
            let new: Vec<Ipv4Addr> = addresses.filter(|a| !entry.learned.contains(a)).collect();
            if entry.learned.len() + new.len() > MAX_LEARNED {
                return Err(format!(
                    "the sandbox has already learned {MAX_LEARNED} addresses, the most it may"
                ));
            }
            entry.learned.extend(&new);
            new
        };
        if new.is_empty() {
            return Ok(());
        }
        let chain = chain_name("PDK-AF", from);
        let mut restore = String::from("*filter\n");
        for address in &new {
            restore.push_str(&format!("-I {chain} 1 -d {address}/32 -j ACCEPT\n"));
        }
        restore.push_str("COMMIT\n");
        let installed = restore_rules("iptables-restore", &restore).await;
        if installed.is_err() {
            // Not open after all: ask again on the next lookup.
            if let Some(entry) = self
                .admitted
                .lock()
                .expect("admitted sandboxes")
                .get_mut(&from)
            {
                for address in &new {
                    entry.learned.remove(address);
                }
            }
        }
        installed
    }

    /// The IPv4 addresses of `name` and their TTLs from the upstream
    /// servers, with the upstream's response code.
    async fn upstream_lookup(
        &self,
        name: &Name,
    ) -> std::result::Result<(ResponseCode, Vec<(Ipv4Addr, u32)>), String> {
        let servers = if self.upstream.is_empty() {
            nameservers()
                .await
                .into_iter()
                .map(|address| SocketAddr::from((address, 53)))
                .collect()
        } else {
            self.upstream.clone()
        };
        if servers.is_empty() {
            return Err(
                "no DNS server is configured (the host's resolv.conf names none)".to_owned(),
            );
        }
        let mut query = Message::query();
        query.metadata.recursion_desired = true;
        query.add_query(Query::query(name.clone(), RecordType::A));
        let bytes = query.to_vec().map_err(|e| e.to_string())?;
        let mut last_error = String::new();
        for server in servers {
            match ask(server, &bytes, query.metadata.id).await {
                Ok(answer) => {
                    let code = answer.metadata.response_code;
                    if code == ResponseCode::ServFail || code == ResponseCode::Refused {
                        last_error = format!("{server} answered {code}");
                        continue;
                    }
                    let records = answer
                        .answers
                        .iter()
                        .filter_map(|record| match &record.data {
                            RData::A(a) => Some((a.0, record.ttl)),
                            _ => None,
                        })
                        .collect();
                    return Ok((code, records));
                }
                Err(why) => last_error = format!("{server}: {why}"),
            }
        }
        Err(last_error)
    }
}

/// Sends the query `bytes` (id `id`) to `server`; its answer. Over UDP,
/// then over TCP when the answer was truncated (RFC 7766).
async fn ask(server: SocketAddr, bytes: &[u8], id: u16) -> std::result::Result<Message, String> {
    let answer = ask_udp(server, bytes, id).await?;
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let mut stream = TcpStream::connect(server)
            .await
            .map_err(|e| e.to_string())?;
        let length = u16::try_from(bytes.len()).map_err(|e| e.to_string())?;
        stream.write_u16(length).await.map_err(|e| e.to_string())?;
        stream.write_all(bytes).await.map_err(|e| e.to_string())?;
        let length = stream.read_u16().await.map_err(|e| e.to_string())?;
        let mut answer = vec![0u8; usize::from(length)];
        stream
            .read_exact(&mut answer)
            .await
            .map_err(|e| e.to_string())?;
        let answer = Message::from_vec(&answer).map_err(|e| e.to_string())?;
        if answer.metadata.id != id {
            return Err("an answer to another query".to_owned());
        }
        Ok(answer)
    })
    .await
    .map_err(|_| "no answer over TCP in time".to_owned())?
}

/// Sends the query `bytes` (id `id`) to `server` over UDP; its answer.
async fn ask_udp(
    server: SocketAddr,
    bytes: &[u8],
    id: u16,
) -> std::result::Result<Message, String> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("an address")
    } else {
        "[::]:0".parse().expect("an address")
    };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket.connect(server).await.map_err(|e| e.to_string())?;
    socket.send(bytes).await.map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; 4096];
    tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        loop {
            let length = socket.recv(&mut buffer).await.map_err(|e| e.to_string())?;
            if let Ok(answer) = Message::from_vec(&buffer[..length])
                && answer.metadata.id == id
            {
                return Ok(answer);
            }
        }
    })
    .await
    .map_err(|_| "no answer in time".to_owned())?
}

#[cfg(test)]
mod tests {
    use super::super::state::tests::admitted;
    use super::*;
    use crate::sandbox::network::Ipv4Cidr;

    #[tokio::test]
    async fn the_resolver_refuses_strangers_and_names_not_allowed() {
        let shared = Shared::new(Ipv4Cidr::default_egress_blocked(), Vec::new());
        let sandbox: Ipv4Addr = "172.30.0.2".parse().unwrap();
        shared
            .admitted
            .lock()
            .unwrap()
            .insert(sandbox, admitted(&["example.com"]));
        let ask_for = |name: &str, kind: RecordType| {
            let mut query = Message::query();
            query.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
            query.to_vec().unwrap()
        };
        let code = |bytes: Option<Vec<u8>>| {
            let answer = Message::from_vec(&bytes.unwrap()).unwrap();
            (answer.metadata.response_code, answer.answers.len())
        };
        let stranger: Ipv4Addr = "172.30.0.3".parse().unwrap();
        for (from, name, kind, expected) in [
            // Not a sandbox this server admitted.
            (
                stranger,
                "example.com.",
                RecordType::A,
                ResponseCode::Refused,
            ),
            (sandbox, "other.com.", RecordType::A, ResponseCode::Refused),
            // Allowed, but only IPv4 is reachable: an empty answer.
            (
                sandbox,
                "example.com.",
                RecordType::AAAA,
                ResponseCode::NoError,
            ),
        ] {
            assert_eq!(
                code(shared.answer(from, &ask_for(name, kind)).await),
                (expected, 0),
                "{name} {kind} from {from}"
            );
        }
        assert!(shared.answer(sandbox, b"not dns").await.is_none());
    }
}
