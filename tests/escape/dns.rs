//! A DNS server standing for the internet's: it answers A queries for the
//! names it was given and NXDOMAIN for every other, and records every name
//! it was asked, so a test can tell a query refused by Paddock from one
//! that reached upstream.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};

pub struct StubDns {
    /// Where it listens (UDP, on loopback).
    pub address: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
}

impl StubDns {
    /// Serves `names` (lowercase, without the final dot) on a free port.
    pub fn start(names: &[(&str, &str)]) -> Self {
        let names: HashMap<String, Ipv4Addr> = names
            .iter()
            .map(|(name, address)| ((*name).to_owned(), address.parse().unwrap()))
            .collect();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&asked);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                let Ok((length, from)) = socket.recv_from(&mut buffer) else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buffer[..length]) else {
                    continue;
                };
                let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
                answer.metadata.recursion_available = true;
                answer.add_queries(query.queries.clone());
                for question in &query.queries {
                    let name = question.name().to_ascii();
                    let name = name.trim_end_matches('.').to_ascii_lowercase();
                    record.lock().unwrap().push(name.clone());
                    match names.get(&name) {
                        Some(address) if question.query_type() == RecordType::A => {
                            answer.add_answer(Record::from_rdata(
                                question.name().clone(),
                                60,
                                RData::A((*address).into()),
                            ));
                        }
                        Some(_) => {}
                        None => answer.metadata.response_code = ResponseCode::NXDomain,
                    }
                }
                let _ = socket.send_to(&answer.to_vec().unwrap(), from);
            }
        });
        Self { address, asked }
    }

    /// Every name asked so far, in order.
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}
