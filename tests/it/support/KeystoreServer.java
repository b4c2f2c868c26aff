// A Java TLS server for tests/it/certs.rs: serves HTTPS with the key and chain of a keystore
// podinit made (KeyStore.getInstance(TYPE).load, KeyManagerFactory, as Kafka, Keycloak and
// Tomcat load theirs), after checking its truststore trusts the server (a client handshake with
// hostname verification). Prints "port N" once serving; answers each request with the alias.
//
// Usage: java KeystoreServer.java TYPE KEYSTORE TRUSTSTORE PASSWORD_FILE
import java.io.*;
import java.net.*;
import java.nio.file.*;
import java.security.*;
import java.security.cert.X509Certificate;
import javax.net.ssl.*;

public class KeystoreServer {
    public static void main(String[] args) throws Exception {
        String type = args[0];
        char[] password = Files.readString(Path.of(args[3])).strip().toCharArray();
        KeyStore keys = KeyStore.getInstance(type);
        try (InputStream in = Files.newInputStream(Path.of(args[1]))) { keys.load(in, password); }
        KeyStore trust = KeyStore.getInstance(type);
        try (InputStream in = Files.newInputStream(Path.of(args[2]))) { trust.load(in, password); }
        for (String alias : java.util.Collections.list(keys.aliases())) {
            System.out.println("keystore " + alias + " key=" + keys.isKeyEntry(alias) + " chain=" + keys.getCertificateChain(alias).length
                + " algorithm=" + keys.getKey(alias, password).getAlgorithm());
        }
        for (String alias : java.util.Collections.list(trust.aliases())) {
            System.out.println("truststore " + alias + " trusted=" + trust.isCertificateEntry(alias));
        }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(keys, password);
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        SSLServerSocket server = (SSLServerSocket) ctx.getServerSocketFactory().createServerSocket(0, 50, InetAddress.getLoopbackAddress());
        int port = server.getLocalPort();
        Thread serving = new Thread(() -> {
            while (true) {
                try (Socket s = server.accept()) {
                    BufferedReader r = new BufferedReader(new InputStreamReader(s.getInputStream()));
                    for (String line = r.readLine(); line != null && !line.isEmpty(); line = r.readLine()) { }
                    OutputStream o = s.getOutputStream();
                    o.write("HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nfrom java ok".getBytes());
                    o.flush();
                } catch (IOException e) {
                    System.out.println("connection failed: " + e);
                }
            }
        });
        serving.setDaemon(true);
        serving.start();
        // The truststore trusts this server, under its name.
        SSLSocket client = (SSLSocket) ctx.getSocketFactory().createSocket("localhost", port);
        SSLParameters params = client.getSSLParameters();
        params.setEndpointIdentificationAlgorithm("HTTPS");
        client.setSSLParameters(params);
        client.startHandshake();
        System.out.println("self-check " + client.getSession().getProtocol() + " " + ((X509Certificate) client.getSession().getPeerCertificates()[0]).getSubjectX500Principal());
        client.close();
        System.out.println("port " + port);
        System.out.flush();
        Thread.sleep(Long.MAX_VALUE);
    }
}
