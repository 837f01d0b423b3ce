// The spec's getUploadUrl as the spec writes it (NestJS, GraphQL code-first, an auth
// guard, a fresh S3Client per call, AWS SDK v3 presigner, a session lookup, then the
// pending row), on the same PostgreSQL tables as mediagate. Benchmark use only.
import "reflect-metadata";
import { randomUUID } from "node:crypto";
import * as path from "node:path";
import { CanActivate, ExecutionContext, ForbiddenException, Injectable, Module, UnauthorizedException, UseGuards, BadRequestException } from "@nestjs/common";
import { NestFactory } from "@nestjs/core";
import { Args, Context, Field, GqlExecutionContext, GraphQLModule, Int, Mutation, ObjectType, Query, Resolver } from "@nestjs/graphql";
import { ApolloDriver, ApolloDriverConfig } from "@nestjs/apollo";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import * as jwt from "jsonwebtoken";
import { Pool } from "pg";

const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 20 });
const ALLOWED = ["image/jpeg", "image/png", "image/gif", "image/webp", "video/mp4", "video/quicktime", "video/webm"];

@ObjectType()
class UploadUrlResponse {
  @Field() uploadUrl: string;
  @Field() fileKey: string;
  @Field(() => Int) expiresIn: number;
}

@Injectable()
class AuthGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = GqlExecutionContext.create(context).getContext().req;
    const header: string = request.headers.authorization ?? "";
    try {
      const claims = jwt.verify(header.replace(/^Bearer /, ""), process.env.JWT_SECRET, { algorithms: ["HS256"] }) as jwt.JwtPayload;
      request.user = { id: claims[process.env.JWT_USER_CLAIM ?? "sub"], organizationId: claims[process.env.JWT_ORG_CLAIM ?? "org_id"] };
      return true;
    } catch {
      throw new UnauthorizedException();
    }
  }
}

@Resolver()
class UploadResolver {
  @Query(() => String) health(): string {
    return "ok";
  }

  @Mutation(() => UploadUrlResponse)
  @UseGuards(AuthGuard)
  async getUploadUrl(
    @Args("sessionId") sessionId: string,
    @Args("filename") filename: string,
    @Args("contentType") contentType: string,
    @Args("stage", { nullable: true }) stage: string,
    @Context() context: any,
  ): Promise<UploadUrlResponse> {
    const user = context.req.user;
    const session = await pool.query("SELECT organization_id FROM garage_sessions WHERE id = $1", [sessionId]);
    if (session.rows[0]?.organization_id !== user.organizationId) throw new ForbiddenException("Access denied");
    if (!ALLOWED.includes(contentType)) throw new BadRequestException("Invalid content type");
    if (filename.includes("..") || filename.includes("/")) throw new BadRequestException("Invalid filename");
    const fileKey = `sessions/${sessionId}/${stage || "general"}/${randomUUID()}${path.extname(filename)}`;
    const s3 = new S3Client({
      region: process.env.S3_REGION ?? "us-east-1",
      endpoint: process.env.S3_ENDPOINT,
      forcePathStyle: true,
      credentials: { accessKeyId: process.env.S3_UPLOAD_ACCESS_KEY, secretAccessKey: process.env.S3_UPLOAD_SECRET_KEY },
    });
    const command = new PutObjectCommand({
      Bucket: process.env.S3_BUCKET,
      Key: fileKey,
      ContentType: contentType,
      Metadata: { "original-filename": filename, "uploaded-by": user.id, "session-id": sessionId, stage: stage || "general" },
    });
    const uploadUrl = await getSignedUrl(s3, command, { expiresIn: 300 });
    await pool.query(
      `INSERT INTO session_media (id, session_id, file_key, original_filename, content_type, stage, uploaded_by,
         status, upload_expires_at, created_at, updated_at, crashed_attempts)
       VALUES ($1, $2, $3, $4, $5, $6, $7, 'PENDING_UPLOAD', now() + interval '300 seconds', now(), now(), 0)`,
      [randomUUID(), sessionId, fileKey, filename, contentType, stage, user.id],
    );
    return { uploadUrl, fileKey, expiresIn: 300 };
  }
}

@Module({
  imports: [GraphQLModule.forRoot<ApolloDriverConfig>({ driver: ApolloDriver, autoSchemaFile: true, context: ({ req }) => ({ req }) })],
  providers: [UploadResolver, AuthGuard],
})
class AppModule {}

async function main(): Promise<void> {
  const app = await NestFactory.create(AppModule, { logger: ["error"] });
  await app.listen(Number(process.env.PORT), "127.0.0.1");
}
main();
