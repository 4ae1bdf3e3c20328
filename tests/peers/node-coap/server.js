// A CoAP device written with node's own CoAP stack (the npm "coap"
// package), for coap2mqtt's dial-out tests: a stack the project did not
// write.  Serves /.well-known/core, an observable /temperature that
// notifies every 100 ms with a counter, and a /setpoint that takes PUT
// and answers GET.  Prints one line per event on stdout:
//   LISTENING <port> | WKC | OBSERVE /temperature | PUT /setpoint <value>
// usage: node server.js <host> <port>
// MCAST_GROUP=224.0.1.187 MCAST_IF=<address of the interface> also joins
// that group (multicast discovery tests; host then 0.0.0.0).
'use strict'
const coap = require('coap')

const host = process.argv[2] || '127.0.0.1'
const port = parseInt(process.argv[3] || '5683', 10)
let setpoint = '20'
let counter = 0

function say (line) {
  process.stdout.write(line + '\n')
}

const options = { type: host.includes(':') ? 'udp6' : 'udp4' }
if (process.env.MCAST_GROUP) {
  options.multicastAddress = process.env.MCAST_GROUP
  if (process.env.MCAST_IF) options.multicastInterface = process.env.MCAST_IF
}
const server = coap.createServer(options)

server.on('request', (req, res) => {
  const path = req.url.split('?')[0]
  if (path === '/.well-known/core' && req.method === 'GET') {
    say('WKC')
    res.setOption('Content-Format', 'application/link-format')
    // WKC_PAD=n appends n more links, so the answer goes block-wise
    let links = '</temperature>;obs;ct=0,</setpoint>'
    for (let i = 0; i < parseInt(process.env.WKC_PAD || '0', 10); i++) {
      links += ',</pad/' + i + '>;title="a link only there to make this long"'
    }
    res.end(links)
  } else if (path === '/temperature' && req.method === 'GET') {
    if (req.headers.Observe !== 0) {
      res.end(String(counter))
      return
    }
    say('OBSERVE /temperature')
    res.setOption('Content-Format', 'text/plain')
    const timer = setInterval(() => {
      counter++
      res.write(String(counter))
    }, 100)
    res.on('finish', () => clearInterval(timer))
  } else if (path === '/setpoint' && req.method === 'PUT') {
    setpoint = req.payload.toString()
    say('PUT /setpoint ' + setpoint)
    res.code = '2.04'
    res.end()
  } else if (path === '/setpoint' && req.method === 'GET') {
    res.setOption('Content-Format', 'text/plain')
    res.end(setpoint)
  } else {
    res.code = '4.04'
    res.end()
  }
})

server.listen(port, host, () => say('LISTENING ' + port))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
